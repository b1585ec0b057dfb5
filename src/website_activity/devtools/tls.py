"""TLS material for the embedded broker's SASL_SSL listener, made with the JDK's ``keytool``.

``ensure_tls(folder)`` makes, once:

* ``ca.p12`` / ``ca.pem``: a self-signed CA (RSA 2048, 10 years). Clients trust ``ca.pem``.
* ``broker.p12``: the broker's key and a certificate signed by that CA for ``localhost`` and
  ``127.0.0.1`` (subject alternative names: clients check the host name), 825 days.
* ``store.pass``: the random password of both keystores (mode 0600, like the folder's files).

Nothing here is a user's secret: the keystore password only protects files that never leave
the machine. The CA's private key stays in ``ca.p12``; only ``ca.pem`` (public) is handed out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from website_activity.adapters.jvm import java_executable
from website_activity.core.errors import PipelineError

HOSTS = "dns:localhost,ip:127.0.0.1"


def keytool() -> str:
    """The ``keytool`` beside the ``java`` the project runs.

    Raises:
        PipelineError: Java is missing, or its JDK has no keytool (a bare JRE).
    """
    java = Path(java_executable())
    for candidate in (java.parent / "keytool", Path(os.path.realpath(java)).parent / "keytool"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("keytool")
    if found:
        return found
    raise PipelineError(f"keytool not found beside {java}: install a full JDK (the secure profile makes "
                        "its certificates with it)")


def _run(*args: str) -> None:
    out = subprocess.run([keytool(), *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PipelineError(f"keytool {args[0]} failed: {last[0][:300]}")


def store_password(folder: Path) -> str:
    return (folder / "store.pass").read_text().strip()


def ensure_tls(folder: Path) -> dict[str, Path]:
    """Make the CA and the broker keystore in ``folder`` unless they exist.

    Returns:
        ``{"ca": ca.pem, "keystore": broker.p12, "password_file": store.pass}``.
    """
    files = {"ca": folder / "ca.pem", "keystore": folder / "broker.p12", "password_file": folder / "store.pass"}
    if all(p.exists() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for stale in ("ca.p12", "ca.pem", "broker.p12", "broker.csr", "broker.pem", "store.pass"):
        (folder / stale).unlink(missing_ok=True)
    password = secrets.token_urlsafe(24)
    pw_file = files["password_file"]
    pw_file.touch(mode=0o600)
    pw_file.write_text(password + "\n")
    ca_store, broker_store = folder / "ca.p12", files["keystore"]
    common = ["-storetype", "PKCS12", "-storepass", password]
    _run("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
         "-dname", "CN=website-activity local CA", "-ext", "bc:c", "-keystore", str(ca_store), *common)
    _run("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca_store), "-file", str(files["ca"]), *common)
    _run("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "825",
         "-dname", "CN=localhost", "-keystore", str(broker_store), *common)
    csr, signed = folder / "broker.csr", folder / "broker.pem"
    _run("-certreq", "-alias", "broker", "-keystore", str(broker_store), "-file", str(csr), *common)
    _run("-gencert", "-rfc", "-alias", "ca", "-keystore", str(ca_store), "-infile", str(csr),
         "-outfile", str(signed), "-validity", "825", "-ext", f"SAN={HOSTS}",
         "-ext", "KU=digitalSignature,keyEncipherment", "-ext", "EKU=serverAuth,clientAuth", *common)
    # the chain: the CA first, then the broker's signed certificate replaces its self-signed one
    _run("-importcert", "-noprompt", "-alias", "ca", "-file", str(files["ca"]), "-keystore", str(broker_store),
         *common)
    _run("-importcert", "-alias", "broker", "-file", str(signed), "-keystore", str(broker_store), *common)
    csr.unlink()
    for p in folder.iterdir():
        os.chmod(p, 0o600 if p.name != "ca.pem" else 0o644)
    return files
