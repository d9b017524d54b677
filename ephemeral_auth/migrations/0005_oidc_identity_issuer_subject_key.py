"""OIDC identities keyed by (issuer, sub), compared byte for byte; the oidc_authorize event type.

Existing links get the key of their (provider slug, sub), which the sign-in
also looks for; their next sign-in rewrites it to the (issuer, sub) key (no
network access here, so the issuer is not known yet).
"""

import hashlib

from django.db import migrations, models


def legacy_keys(apps, schema_editor):
    identity = apps.get_model("ephemeral_auth", "OIDCIdentity")
    alias = schema_editor.connection.alias
    for row in identity.objects.using(alias).filter(subject_key="").iterator():
        digest = hashlib.sha256(f"provider:{row.provider}\x00{row.subject}".encode()).hexdigest()
        identity.objects.using(alias).filter(pk=row.pk).update(subject_key=digest)


class Migration(migrations.Migration):

    dependencies = [
        ("ephemeral_auth", "0004_lock_model_and_two_factor_stamps"),
    ]

    operations = [
        migrations.AddField(
            model_name="oidcidentity",
            name="issuer",
            field=models.CharField(blank=True, default="", max_length=512, verbose_name="issuer"),
        ),
        migrations.AddField(
            model_name="oidcidentity",
            name="subject_key",
            field=models.CharField(default="", max_length=64, verbose_name="identity key"),
            preserve_default=False,
        ),
        migrations.RunPython(legacy_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="oidcidentity", name="ea_oidc_subject_unique"),
        migrations.AddConstraint(
            model_name="oidcidentity",
            constraint=models.UniqueConstraint(fields=("subject_key",), name="ea_oidc_subject_key_unique"),
        ),
        migrations.AlterField(
            model_name='ratelimitevent',
            name='event_type',
            field=models.CharField(choices=[('2fa_attempt', 'Two-factor attempt'), ('email_send', 'Email code sent'), ('login_attempt', 'Failed login (per user)'), ('login_ip', 'Failed login (per IP)'), ('password_reset_send', 'Password reset (per email)'), ('password_reset_ip', 'Password reset (per IP)'), ('login_user_ip', 'Failed login (per user and IP)'), ('login_device', 'Failed login (per known browser)'), ('oidc_authorize', 'OIDC sign-in started (per IP)')], max_length=20, verbose_name='event type'),
        ),
    ]
