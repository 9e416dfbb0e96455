"""A real SMTP server for Hookline's tests.

Usage:
  smtp_sink.py PORT OUTDIR [--reject CODE]
      plain SMTP (Python 3.11 standard library `smtpd`); with --reject,
      every message is refused with that SMTP reply code.
  smtp_sink.py PORT OUTDIR --secure CERT KEY USER PASSWORD
      STARTTLS and AUTH required (aiosmtpd, from PyPI), with CERT/KEY as the
      server certificate and USER/PASSWORD as the only login.

Each accepted message is written to OUTDIR/<n>.json with its envelope,
headers, decoded text body and decoded attachments (and, with --secure,
whether the session was encrypted and who logged in).
"""
import email
import email.policy
import json
import os
import sys
import warnings


def record(mailfrom, rcpttos, data):
    """What the tests read: envelope, headers, text body, attachments."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    text, attachments = None, []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_filename():
            attachments.append({
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "content": part.get_payload(decode=True).decode("utf-8"),
            })
        elif part.get_content_type() == "text/plain" and text is None:
            text = part.get_payload(decode=True).decode("utf-8")
    return {
        "mail_from": mailfrom,
        "rcpt_to": rcpttos,
        "headers": {k.lower(): str(v) for k, v in msg.items()},
        "text": text,
        "attachments": attachments,
    }


class Writer:
    """Writes records atomically as OUTDIR/1.json, 2.json, ..."""

    def __init__(self, outdir):
        self.outdir, self.n = outdir, 0

    def write(self, rec):
        self.n += 1
        tmp = os.path.join(self.outdir, f".{self.n}.json")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(self.outdir, f"{self.n}.json"))


def plain(port, outdir, reject):
    import asyncore

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import smtpd  # removed in 3.12; present in Debian 12's 3.11

    writer = Writer(outdir)

    class Sink(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            if reject:
                return f"{reject} rejected by test sink"
            writer.write(record(mailfrom, rcpttos, data))
            return None

    Sink(("127.0.0.1", port), None, decode_data=False)
    print("ready", flush=True)
    asyncore.loop()


def secure(port, outdir, cert, key, user, password):
    import ssl
    import threading

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    writer = Writer(outdir)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(), password.encode())
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            rec = record(envelope.mail_from, envelope.rcpt_tos, envelope.original_content or envelope.content)
            rec["tls"] = session.ssl is not None
            rec["auth_user"] = session.auth_data
            writer.write(rec)
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, server_hostname="localhost", tls_context=context,
        require_starttls=True, auth_required=True, auth_require_tls=True, authenticator=authenticator)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    port, outdir, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if rest[:1] == ["--secure"]:
        secure(port, outdir, *rest[1:5])
    else:
        plain(port, outdir, rest[1] if rest[:1] == ["--reject"] else None)
