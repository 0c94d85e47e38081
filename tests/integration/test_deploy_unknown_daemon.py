"""The daemon's Deploy refuses a definition with unknown keys, naming the
nearest known key, unless DeployRequest.allow_unknown (issue 13.4); the CLI
through the daemon says each unknown key once."""
import unittest

import grpc

import test_daemon as td
from test_daemon import DaemonTestCase, daemon_config

TYPO = ('name = "web"\n\n[[components]]\nname = "web"\nimage = "localhost/web:1"\n'
        'comand = ["serve"]\n')


class DeployUnknownKeys(DaemonTestCase):
    def setUp(self):
        super().setUp()
        daemon_config(self.env)
        self.d = self.daemon().wait_boot_done()
        self.pb, self.grpc_stubs, _, _ = td.stubs()

    def names(self, stub):
        return [s.name for s in stub.ListServices(self.pb.ListServicesRequest(), timeout=10).services]

    def test_refused_unless_allowed(self):
        with self.d.unix_channel() as ch:
            stub = self.grpc_stubs.AgentServiceStub(ch)
            details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Deploy,
                                       self.pb.DeployRequest(service_toml=TYPO, source="web.toml"),
                                       timeout=10)
            self.assertIn("web.toml:6:1: unknown key 'components[0].comand' (did you mean 'cmd'?)", details)
            self.assertEqual(self.names(stub), [])
            resp = stub.Deploy(self.pb.DeployRequest(service_toml=TYPO, source="web.toml",
                                                     allow_unknown=True), timeout=30)
            self.assertIn("warning: web.toml:6:1: unknown key 'components[0].comand' "
                          "(did you mean 'cmd'?), ignored", list(resp.messages))
            self.assertEqual(self.names(stub), ["web"])

    def test_the_cli_through_the_daemon_says_it_once(self):
        path = self.env.write("web.toml", TYPO)
        r = self.env.run("deploy", path)
        self.assertEqual(r.rc, 2, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).count("comand"), 1, r.stdout + r.stderr)
        r = self.env.run("deploy", "--allow-unknown", path, timeout=60)
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).count("comand"), 1, r.stdout + r.stderr)
        self.assertIn("deploy", self.d.log())


if __name__ == "__main__":
    unittest.main()
