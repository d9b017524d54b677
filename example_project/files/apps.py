from django.apps import AppConfig


class FilesConfig(AppConfig):
    name = "example_project.files"
    label = "demo_files"
    verbose_name = "Demo files"
