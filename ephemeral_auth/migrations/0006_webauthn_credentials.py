"""WebAuthn: the credentials table and the three challenge token types (issue 15)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ephemeral_auth', '0005_oidc_identity_issuer_subject_key'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='ephemeraltoken',
            name='token_type',
            field=models.CharField(choices=[('pre_auth', 'Pending two-factor login'), ('oidc_state', 'OIDC authorization state'), ('oidc_exchange', 'OIDC exchange for a single-page app'), ('password_reset', 'Password reset'), ('email_otp_setup', 'Email code enrolment'), ('slicer_download', 'One-time download link'), ('webauthn_register', 'Security key registration'), ('webauthn_login', 'Security key sign-in step'), ('passkey_login', 'Passkey sign-in')], max_length=20, verbose_name='type'),
        ),
        migrations.CreateModel(
            name='WebAuthnCredential',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('credential_id', models.BinaryField(max_length=1023, verbose_name='credential id')),
                ('credential_key', models.CharField(max_length=64, verbose_name='credential id digest')),
                ('public_key', models.BinaryField(max_length=16384, verbose_name='public key (COSE)')),
                ('user_handle', models.BinaryField(max_length=64, verbose_name='user handle')),
                ('sign_count', models.BigIntegerField(default=0, verbose_name='signature counter')),
                ('aaguid', models.CharField(blank=True, default='', max_length=36, verbose_name='AAGUID')),
                ('transports', models.CharField(blank=True, default='', max_length=128, verbose_name='transports')),
                ('backup_eligible', models.BooleanField(default=False, verbose_name='backup eligible')),
                ('backup_state', models.BooleanField(default=False, verbose_name='backed up')),
                ('discoverable', models.BooleanField(blank=True, null=True, verbose_name='discoverable (passkey)')),
                ('user_verified_at_registration', models.BooleanField(default=False, verbose_name='user verified at registration')),
                ('name', models.CharField(max_length=64, verbose_name='name')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('last_used_at', models.DateTimeField(blank=True, null=True, verbose_name='last used at')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webauthn_credentials', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'WebAuthn credential',
                'verbose_name_plural': 'WebAuthn credentials',
                'db_table': 'auth_webauthn_credentials',
                'constraints': [models.UniqueConstraint(fields=('credential_key',), name='ea_webauthn_credential_unique')],
            },
        ),
    ]
