"""A real SMTP relay for hubreview's mail tests: aiosmtpd on 127.0.0.1, started by a test.

It listens on a free port of 127.0.0.1 and prints `READY <port>` once it accepts
connections. Every MAIL FROM it sees is appended to `<spool>/mail_from.log` (with whether
the session had authenticated), and every message it accepts is written to
`<spool>/<n>.eml` exactly as received, with its envelope in `<spool>/<n>.json`. It stops
when its standard input closes, so it never outlives the test that started it.

Modes (--tls): `plain`; `starttls` (offers STARTTLS, requires it before MAIL); `implicit`
(TLS from the first byte). --user/--password require AUTH with those credentials
(aiosmtpd offers AUTH only over TLS). --no-usable-auth offers AUTH CRAM-MD5 alone, which
hubreview does not speak. --size sets the SIZE limit: a larger message gets aiosmtpd's
`552 Error: Too much mail data`; --hide-size enforces it without announcing it in EHLO,
as relays behind some proxies do.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Spool:
    """Keeps what the relay receives, for the test to read."""

    def __init__(self, directory, hide_size):
        self.directory = directory
        self.hide_size = hide_size
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.hide_size:
            responses = [r for r in responses if not r.startswith("250-SIZE")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with open(os.path.join(self.directory, "mail_from.log"), "a") as log:
            log.write(f"{address} authenticated={bool(session.authenticated)}\n")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        stem = os.path.join(self.directory, f"{self.count:03}")
        with open(stem + ".eml.part", "wb") as out:
            out.write(envelope.original_content)
        with open(stem + ".json", "w") as out:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "authenticated": bool(session.authenticated),
                    "tls": session.ssl is not None,
                    "mail_options": envelope.mail_options,
                },
                out,
            )
        os.rename(stem + ".eml.part", stem + ".eml")
        return "250 2.0.0 Message accepted for delivery"


class SpoolWithoutUsableAuth(Spool):
    """Offers only CRAM-MD5, a mechanism hubreview does not implement."""

    async def auth_CRAM__MD5(self, server, args):
        await server.push("535 5.7.8 CRAM-MD5 is not enabled on this test relay")
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls", choices=["plain", "starttls", "implicit"], default="plain")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--no-usable-auth", action="store_true")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--hide-size", action="store_true")
    parser.add_argument("--spool", required=True)
    args = parser.parse_args()

    context = None
    if args.tls != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kind = SpoolWithoutUsableAuth if args.no_usable_auth else Spool
    handler = kind(args.spool, args.hide_size)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=ok, handled=False)

    async def serve():
        loop = asyncio.get_running_loop()
        options = dict(
            hostname="relay.test",
            enable_SMTPUTF8=True,
            loop=loop,
        )
        if args.size is not None:
            options["data_size_limit"] = args.size
        if args.tls == "starttls":
            options["tls_context"] = context
            options["require_starttls"] = True
        if args.tls == "implicit":
            # The whole connection is TLS: AUTH needs no STARTTLS first.
            options["auth_require_tls"] = False
        if args.user is not None:
            options["auth_required"] = True
            options["authenticator"] = authenticator
        if args.no_usable_auth:
            options["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]

        server = await loop.create_server(
            lambda: SMTP(handler, **options),
            "127.0.0.1",
            0,
            ssl=context if args.tls == "implicit" else None,
        )
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
