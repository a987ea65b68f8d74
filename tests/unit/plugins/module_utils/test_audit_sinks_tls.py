"""The alert mail's TLS context: the mailer's context, with a missing CA file reported as an audit error."""

import ssl

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import audit_sinks
from ansible_collections.penguinmails.vps.plugins.module_utils.audit_format import AuditError


def test_a_missing_ca_file_is_an_audit_error_naming_the_file(tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(AuditError) as raised:
        audit_sinks.tls_context(True, str(missing))
    assert "cannot load the CA file %s" % missing in str(raised.value)


def test_certificates_are_verified_unless_told_otherwise():
    assert audit_sinks.tls_context().verify_mode == ssl.CERT_REQUIRED
    unverified = audit_sinks.tls_context(validate_certs=False)
    assert unverified.verify_mode == ssl.CERT_NONE and not unverified.check_hostname
