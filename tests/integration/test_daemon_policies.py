"""Bad policies never take the daemon down (SPEC §7, §9, §10): a broken
supervise.lua is refused at start and on SIGHUP (the old one kept), a boot
policy that returns nothing ends boot as failed (writes allowed, BootStatus
says why), and a policy that spins is stopped while the API keeps answering."""
import os
import signal
import time
import unittest

from test_daemon import DaemonTestCase, daemon_config, free_port, service_toml
import test_daemon

BROKEN_SUPERVISE = """-- supervise.lua with a syntax error on line 3
return {
    on_exit = function(agent, component, info) return = 1 end,
}
"""
GOOD_SUPERVISE = 'return require "policy.builtin.supervise"\n'
NIL_BOOT = "return { run = function() return nil end }\n"
SPINNING_RECOVER = """-- recover.lua that never yields
return {
    run = function(agent, opts)
        while true do end
    end,
}
"""


class DaemonPolicies(DaemonTestCase):
    def policy_dir(self, **files):
        pdir = self.env.path("policies")
        os.makedirs(pdir, mode=0o755, exist_ok=True)
        os.chmod(pdir, 0o755)
        for name, text in files.items():
            self.env.write("policies/%s.lua" % name, text)
        return pdir

    def test_a_broken_supervise_policy_is_refused_at_start(self):
        daemon_config(self.env, policy_dir=self.policy_dir(supervise=BROKEN_SUPERVISE))
        r = self.env.run("run", timeout=20)
        self.assertEqual(r.rc, 2, r.stderr)
        self.assertIn("supervise.lua:3", r.stderr)

    def test_sighup_keeps_the_old_supervise_policy(self):
        pdir = self.policy_dir(supervise=GOOD_SUPERVISE)
        daemon_config(self.env, policy_dir=pdir)
        d = self.daemon().wait_boot_done()
        self.env.write("policies/supervise.lua", BROKEN_SUPERVISE)
        d.signal(signal.SIGHUP)
        self.assertTrue(d.wait_log("policy reload refused"), d.log())
        self.assertIn("supervise.lua:3", d.log())
        self.assertIsNone(d.proc.poll())
        r = self.env.run("check")
        self.assertEqual(r.rc, 2)

    def test_a_boot_policy_returning_nil_ends_boot_as_failed(self):
        daemon_config(self.env, policy_dir=self.policy_dir(boot=NIL_BOOT))
        d = self.daemon().wait_boot_done()
        with d.unix_channel() as ch:
            stub = test_daemon.agent_pb2_grpc.AgentServiceStub(ch)
            st = stub.BootStatus(test_daemon.agent_pb2.BootStatusRequest(), timeout=10)
            self.assertTrue(st.boot_done)
            self.assertIn("returned nil", st.error)
            resp = stub.Deploy(test_daemon.agent_pb2.DeployRequest(
                service_toml=service_toml("after", route=False), source="after.toml"), timeout=20)
            self.assertTrue(resp.ok, resp)
        self.assertIn("boot policy returned no report", d.log())

    def test_a_spinning_policy_is_stopped_and_the_api_keeps_answering(self):
        daemon_config(self.env, policy_dir=self.policy_dir(recover=SPINNING_RECOVER))
        d = self.daemon().wait_boot_done()
        with d.unix_channel() as ch:
            stub = test_daemon.agent_pb2_grpc.AgentServiceStub(ch)
            fut = stub.Recover.future(test_daemon.agent_pb2.RecoverRequest(), timeout=30)
            time.sleep(0.5)
            t0 = time.monotonic()
            node = stub.NodeStatus(test_daemon.agent_pb2.NodeStatusRequest(), timeout=10)
            self.assertEqual(node.node_name, "test-node")
            with self.assertRaises(Exception) as cm:
                fut.result()
            self.assertIn("without yielding", str(cm.exception.details()))
            self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("recover.lua:4", d.log())

    def test_boot_status_names_what_a_blocked_foundation_waits_for(self):
        port = free_port()  # nothing listens there: the probe is refused
        daemon_config(self.env, boot=[("foundation", ["db"], "60s", "tcp")])
        path = self.env.write("db.toml", service_toml("db", host_port=port, route=False, health_port=8080))
        r = self.local("deploy", path)
        self.assertEqual(r.rc, 0, r.stderr)
        d = self.daemon()
        deadline = time.monotonic() + 10
        svc = None
        with d.unix_channel() as ch:
            stub = test_daemon.agent_pb2_grpc.AgentServiceStub(ch)
            while time.monotonic() < deadline:
                st = stub.BootStatus(test_daemon.agent_pb2.BootStatusRequest(), timeout=10)
                svc = st.stages[0].services[0]
                if svc.waiting_for:
                    break
                time.sleep(0.1)
            self.assertFalse(st.boot_done)
        self.assertEqual(svc.waiting_for, "db", svc)
        self.assertIn("refused", svc.last_error)
        self.assertGreater(svc.attempts, 0)


if __name__ == "__main__":
    unittest.main()
