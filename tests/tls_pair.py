"""A test certificate authority and a server certificate for 127.0.0.1, as PEM files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    """The files a TLS test setup writes: the CA clients trust, the server's pair."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def toml(self) -> str:
        """``[server]`` keys serving this pair."""
        return f'tls_cert = "{self.cert}"\ntls_key = "{self.key}"\n'


def write_tls_files(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    issued.private_key_pem.write_to_path(str(files.key))
    with files.cert.open("wb") as out:  # the chain: the certificate, then its issuers
        for blob in issued.cert_chain_pems:
            out.write(blob.bytes())
    return files
