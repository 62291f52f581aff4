"""A test certificate authority and signing certificates, made fresh by the tests.

C2PA refuses self-signed signing certificates, so the tests make a root CA and an end-entity
certificate it issued (ECDSA P-256, digital signature, e-mail protection usage), as an
organisation's own CA would.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Manufacturing")])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                         decipher_only=False)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(folder: Path) -> dict[str, Path]:
    """ca.pem (the root to trust), signer.pem (leaf then root), signer.key, and two leaves
    C2PA would refuse: self-signed (self-signed.pem/.key), and one without key identifiers
    (bare.pem/.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Acme Test Root CA"))
          .issuer_name(_name("Acme Test Root CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_usage(sign=False, ca=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "certificate": folder / "signer.pem",
             "key": folder / "signer.key", "self_signed": folder / "self-signed.pem",
             "self_signed_key": folder / "self-signed.key", "bare": folder / "bare.pem",
             "bare_key": folder / "bare.key"}
    paths["ca"].write_bytes(_pem(ca))
    for issuer, issuer_key, cert_path, key_path, ids in (
            (ca, ca_key, paths["certificate"], paths["key"], True),
            (None, None, paths["self_signed"], paths["self_signed_key"], True),
            (ca, ca_key, paths["bare"], paths["bare_key"], False)):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name("Acme Training Videos")
        builder = (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(issuer.subject if issuer else subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_usage(sign=True, ca=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                  critical=False))
        if ids:
            builder = (builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    (issuer_key or key).public_key()), critical=False))
        leaf = builder.sign(issuer_key or key, hashes.SHA256())
        cert_path.write_bytes(_pem(leaf) + (_pem(issuer) if issuer else b""))
        key_path.write_bytes(_key_pem(key))
    return paths
