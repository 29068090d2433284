#!/usr/bin/python3
"""A real XMPP client (Debian's python3-slixmpp) for the Snikket-host test.

For each of --sessions, connects to HOST:PORT as JID, with STARTTLS (starttls) or direct TLS
(direct-tls, XEP-0368) offering ALPN --alpn, verifies the server's certificate against --cafile
for HOST, authenticates with SASL (the strongest mechanism both offer), binds a resource, pings
the server (XEP-0199), then sends --messages messages of --message-bytes each to its own full
JID and checks that every body comes back unchanged (the stream carries them both ways through
splicer).

Prints one line of `key=value` facts per session and exits 0 when every step of every session
passed, 1 otherwise, 2 at a --timeout. The test reads the facts; nothing here decides what
splicer should have done.
"""

import argparse
import asyncio
import hashlib
import random
import sys

import slixmpp


class Client(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.facts = {"local": "", "bound": "", "ping": "no", "messages_ok": 0, "tls": "", "alpn": "",
                      "mechanism": ""}
        self.expected = {}
        self.done = asyncio.Event()
        self.failed = ""
        self.register_plugin("xep_0199")  # XMPP ping
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
        self.add_event_handler("disconnected", lambda _: self.fail("disconnected"))
        self.add_event_handler("auth_success", self.on_auth_success)

    def fail(self, why):
        if not self.done.is_set():
            self.failed = why
            self.done.set()

    def on_auth_success(self, _):
        mechanism = getattr(self.plugin["feature_mechanisms"], "mech", None)
        self.facts["mechanism"] = getattr(mechanism, "name", "")

    async def on_session_start(self, _):
        self.facts["bound"] = str(self.boundjid.full)
        # The client's own address and port: the test finds splicer's log line with it.
        local = self.transport.get_extra_info("sockname") if self.transport else None
        if local:
            self.facts["local"] = "%s:%d" % (local[0], local[1])
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is not None:
            self.facts["tls"] = ssl_object.version() or ""
            self.facts["alpn"] = ssl_object.selected_alpn_protocol() or ""
        try:
            await self.plugin["xep_0199"].ping(self.boundjid.domain, timeout=5)
            self.facts["ping"] = "ok"
        except Exception as error:  # an iq error or a timeout: the fact says which
            self.fail("ping: %r" % (error,))
            return
        generator = random.Random(self.args.seed)
        for index in range(self.args.messages):
            body = "%d:" % index + "".join(
                generator.choice("0123456789abcdef") for _ in range(self.args.message_bytes))
            self.expected[str(index)] = hashlib.sha256(body.encode()).hexdigest()
            self.send_message(mto=self.boundjid.full, mbody=body, mtype="chat")
        if self.args.messages == 0:
            self.done.set()

    def on_message(self, message):
        body = str(message["body"])
        index, _, _ = body.partition(":")
        if self.expected.get(index) == hashlib.sha256(body.encode()).hexdigest():
            del self.expected[index]
            self.facts["messages_ok"] += 1
        else:
            self.fail("message %s came back changed" % index)
        if not self.expected:
            self.done.set()


async def run_session(args, direct_tls):
    client = Client(args)
    client.ca_certs = args.cafile
    # --host is a name the system resolver knows (the test's /etc/hosts in the client's
    # namespace): slixmpp then sends it as SNI and checks the certificate against it, in
    # STARTTLS and in direct TLS (XEP-0368) alike. No SRV lookup: the port is given.
    client.use_aiodns = False
    # slixmpp 1.8 resolves the name with default_port (5222), not the port connect() was
    # given, and connects there: make them agree.
    client.default_port = args.port
    client.use_ipv6 = False
    if direct_tls and args.alpn:
        client.ssl_context.set_alpn_protocols([args.alpn])
    client.connect(address=(args.host, args.port), use_ssl=direct_tls,
                   force_starttls=not direct_tls, disable_starttls=direct_tls)
    try:
        await asyncio.wait_for(client.done.wait(), timeout=args.timeout)
    except asyncio.TimeoutError:
        client.failed = client.failed or "timeout"
    finally:
        client.disconnect()
        await asyncio.sleep(0.2)
    facts = dict(client.facts, result=client.failed or "ok")
    facts = dict(session="direct-tls" if direct_tls else "starttls", **facts)
    print(" ".join("%s=%s" % (key, str(value).replace(" ", "_")) for key, value in facts.items()),
          flush=True)
    if client.failed == "timeout":
        return 2
    return 0 if not client.failed else 1


async def run(args):
    # One session after the other, in one process: starting Python and importing slixmpp
    # costs more than a session on a loaded machine.
    status = 0
    for session in args.sessions:
        status = max(status, await run_session(args, session == "direct-tls"))
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--sessions", nargs="+", choices=["starttls", "direct-tls"],
                        default=["starttls"], help="in this order, each on a new connection")
    parser.add_argument("--alpn", default="", help="offered in direct TLS")
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--message-bytes", type=int, default=32768)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=15)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
