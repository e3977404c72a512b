"""Mirror while Entra ID's token endpoint or Key Vault is down, and while tokens expire.

The fake requires a bearer token on the DICOM routes. The plugin gets its client secret from
the configuration or from a Key Vault secret, which it reads with a managed identity token of
the fake's instance metadata route. Each test ends with the shared check of fault_checks.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fault_checks  # noqa: E402
import harness  # noqa: E402

VAULT_SECRET_NAME = "orthanc-dicom-client-secret"
# Retry.MaxDelaySeconds of harness.azure_section; every outage below lasts longer.
MAX_DELAY_SECONDS = 2
OUTAGE_SECONDS = 3 * MAX_DELAY_SECONDS
STATE_TIMEOUT_SECONDS = 60
# More failures than the plugin can use up during an outage: clear_faults() ends it.
OUTAGE_FAULTS = 100000
SHORT_TOKEN_LIFETIME_SECONDS = 2
SERVICE_DELAY_SECONDS = 0.3
# A token request that hangs for longer than a stop may take.
TOKEN_STALL_SECONDS = 25
MAX_STOP_SECONDS = 10


class CredentialFaultsTest(fault_checks.FaultTestCase):
    require_auth = True

    def wait_waiting(self, source, text):
        """Wait for status State Waiting with text in PauseReason, LastError or Credentials."""
        def waiting():
            status = source.status()
            message = " ".join(str(status.get(key)) for key in
                               ("PauseReason", "LastError", "Credentials"))
            return status if status["State"] == "Waiting" and text in message else None

        return harness.wait_for(waiting, STATE_TIMEOUT_SECONDS,
                                f"status Waiting with a message naming {text}",
                                describe_state=source.status)

    def hold_outage(self, source, started):
        """Wait until the outage has lasted OUTAGE_SECONDS; check nothing is Mirrored or Failed."""
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        counts = source.counts()
        self.assertEqual(counts["Failed"], 0, counts)
        self.assertEqual(counts["Mirrored"], 0, counts)

    def test_token_endpoint_down_then_back(self):
        self.fake.fail_next(503, count=OUTAGE_FAULTS, target="token")
        started = time.monotonic()
        section = fault_checks.fault_section(
            self.fake, Credentials=fault_checks.client_secret_credentials(self.fake))
        source = self.start_source(section)
        self.upload_study(source, series=2, per_series=5)
        status = self.wait_waiting(source, "token")
        self.assertTrue(status["Credentials"]["LastError"], status)
        self.hold_outage(source, started)
        self.assertEqual(self.fake.stow_requests(), [])
        refused = [request for request in self.fake.requests_of("token")
                   if request["Status"] == 503]
        self.assertGreaterEqual(len(refused), 2, refused)

        self.fake.clear_faults()
        status = self.assert_mirror_consistent(source)
        self.assertEqual(status["State"], "Running", status)

    def test_key_vault_and_token_down(self):
        self.fake.set_vault_secret(VAULT_SECRET_NAME, self.fake.client_secret)
        vault = {"VaultUrl": self.fake.url, "SecretName": VAULT_SECRET_NAME,
                 "Credentials": {"Type": "ManagedIdentity"}}
        credentials = fault_checks.client_secret_credentials(self.fake, KeyVault=vault)
        del credentials["ClientSecret"]
        section = fault_checks.fault_section(self.fake, Credentials=credentials)
        environment = {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.fake.identity_url}

        # Key Vault down before the first read: no secret is held, so sending waits.
        self.fake.fail_next(503, count=OUTAGE_FAULTS, target="vault")
        started = time.monotonic()
        source = self.start_source(section, environment=environment)
        self.upload_study(source, per_series=5)
        self.wait_waiting(source, "Key Vault")
        self.hold_outage(source, started)
        self.assertEqual(self.fake.stow_requests(), [])
        self.fake.clear_faults()
        self.assert_mirror_consistent(source)
        vault_status = source.get_json("/azure-dicom/credentials")["KeyVault"]
        self.assertTrue(vault_status["VersionInUse"], vault_status)

        # Both down while a secret is held: the revoked token forces a new one, which fails.
        self.fake.fail_next(503, count=OUTAGE_FAULTS, target="vault")
        self.fake.fail_next(503, count=OUTAGE_FAULTS, target="token")
        self.fake.revoke_tokens()
        started = time.monotonic()
        uids = self.upload_study(source, per_series=5)
        self.wait_waiting(source, "token")
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        items = self.items_by_uid(source)
        for uid in uids:
            self.assertIn(items[uid]["State"], ("Pending", "Sending"), items[uid])
        self.fake.clear_faults()
        self.assert_mirror_consistent(source)

    def test_stop_during_token_request(self):
        self.fake.delay_next(TOKEN_STALL_SECONDS, target="token")
        section = fault_checks.fault_section(
            self.fake, Credentials=fault_checks.client_secret_credentials(self.fake))
        source = self.start_source(section)
        uids = self.upload_study(source, per_series=3)
        harness.wait_for(lambda: source.status()["Counts"]["Sending"] > 0, STATE_TIMEOUT_SECONDS,
                         "a worker waiting for the hung token request",
                         describe_state=source.status)

        started = time.monotonic()
        source.stop(timeout=TOKEN_STALL_SECONDS + 30)
        stop_seconds = time.monotonic() - started
        self.assertLess(stop_seconds, MAX_STOP_SECONDS,
                        "the stop waited for the hung token request")

        # Nothing was lost: the restarted plugin sends the study with a new token.
        source.start()
        status = self.assert_mirror_consistent(source)
        self.assertEqual(status["Counts"]["Mirrored"], len(uids), status)

    def test_token_expiring_mid_batch(self):
        self.fake.set_token_lifetime(SHORT_TOKEN_LIFETIME_SECONDS)
        self.fake.set_delay(SERVICE_DELAY_SECONDS)
        section = fault_checks.fault_section(
            self.fake, Workers=2, MaxInstancesPerRequest=5,
            Credentials=fault_checks.client_secret_credentials(self.fake))
        source = self.start_source(section)
        uploader = fault_checks.Uploader(source.url, harness.make_study(4, 15), interval=0.02)
        uploader.start()
        # Revoking the tokens mid-run makes the next request fail with 401, unless the plugin
        # has renewed its token since.
        harness.wait_for(lambda: len(self.fake.stow_requests()) >= 3, STATE_TIMEOUT_SECONDS,
                         "three requests before the revocation")
        self.fake.revoke_tokens()
        uploader.join(timeout=STATE_TIMEOUT_SECONDS)
        self.assertIsNone(uploader.error)
        self.assert_mirror_consistent(source)

        tokens_issued = self.fake.state()["TokensIssued"]
        self.assertGreaterEqual(tokens_issued, 3, "the plugin did not renew its short tokens")
        expired = [request for request in self.fake.stow_requests()
                   if request.get("AuthError") == "expired token"]
        print(f"tokens issued {tokens_issued}, requests with an expired token {len(expired)}, "
              f"requests {len(self.fake.stow_requests())}", flush=True)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["State"], "Mirrored", item)


if __name__ == "__main__":
    fault_checks.main()
