#include "Azure/KeyVault.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace AzureDicom;
using namespace AzureDicom::Testing;

namespace
{
const char TENANT_ID[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const char PRINCIPAL_ID[] = "33333333-4444-5555-6666-777777777777";
const char SECRET_NAME[] = "orthanc-dicom-client-secret";
const char VERSION_1[] = "4387e9f3d6e14c459867679a90fd0f79";
const char VERSION_2[] = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e";
const char VALUE_1[] = "Qx8~first.Secret+Value/1=";
const char VALUE_2[] = "Qx8~second.Secret+Value/2=";
const int64_t START_MS = 1700000000000;
const int64_t SECONDS_MS = 1000;
const int64_t HOUR_MS = 3600 * SECONDS_MS;
const unsigned int REFRESH_SECONDS = 3600;
const int64_t REFRESH_MS = REFRESH_SECONDS * SECONDS_MS;
const int64_t FAILED_READ_RETRY_MS = 60 * SECONDS_MS;
const int THREAD_COUNT = 8;

const char RBAC_DENIED[] =
    "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Caller is not authorized to perform action "
    "on resource.\\r\\nIf role assignments, deny assignments or role definitions were changed "
    "recently, please observe propagation time.\\r\\nCaller: "
    "appid=33333333-4444-5555-6666-777777777777;oid=88888888-9999-aaaa-bbbb-cccccccccccc;iss="
    "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/\\r\\nAction: "
    "'Microsoft.KeyVault/vaults/secrets/getSecret/action'\\r\\nAssignment: (not found)\\r\\n"
    "Vault: myvault;location=westeurope\\r\\n\",\"innererror\":{\"code\":\"ForbiddenByRbac\"}}}";

const char POLICY_DENIED[] =
    "{\"error\":{\"code\":\"Forbidden\",\"message\":\"The user, group or application "
    "'appid=33333333-4444-5555-6666-777777777777;oid=88888888-9999-aaaa-bbbb-cccccccccccc;iss="
    "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/' does not have secrets get "
    "permission on key vault 'myvault;location=westeurope'. For help resolving this issue, "
    "please see https://go.microsoft.com/fwlink/?linkid=2125287\","
    "\"innererror\":{\"code\":\"AccessDenied\"}}}";

const char SECRET_DISABLED[] =
    "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Operation get is not allowed on a disabled "
    "secret.\",\"innererror\":{\"code\":\"SecretDisabled\"}}}";

const char SECRET_NOT_FOUND[] =
    "{\"error\":{\"code\":\"SecretNotFound\",\"message\":\"A secret with (name/id) "
    "orthanc-dicom-client-secret was not found in this key vault. If you recently deleted this "
    "secret you may be able to recover it using the correct recovery command.\"}}";

const char INVALID_ISSUER[] =
    "{\"error\":{\"code\":\"Unauthorized\",\"message\":\"AKV10032: Invalid issuer. Expected one "
    "of https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/, found "
    "https://sts.windows.net/11111111-2222-3333-4444-555555555555/.\"}}";

const char CHALLENGE[] =
    "Bearer authorization=\"https://login.microsoftonline.com/"
    "72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\"";


struct CredentialState
{
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};
};


// Issues "kv-token-1", "kv-token-2", ... that live an hour, counting its calls. The client calls
// its token cache with the real clock, so the expiry follows the real clock too.
class FakeVaultCredential : public ICredential
{
public:
  explicit FakeVaultCredential(std::shared_ptr<CredentialState> state) : state_(std::move(state)) {}

  AccessToken RequestToken() override
  {
    const int call = ++state_->calls;
    if (state_->fail)
    {
      throw Exception(ErrorCode::Unauthorized,
                      "ManagedIdentity credential: the token request to "
                      "http://127.0.0.1:1/metadata/identity/oauth2/token failed with HTTP 400");
    }

    AccessToken token;
    token.value = "kv-token-" + std::to_string(call);
    token.expiresOn = NowMs() + HOUR_MS;
    return token;
  }

  std::string GetType() const override
  {
    return "ManagedIdentity";
  }

  std::string GetPrincipal() const override
  {
    return PRINCIPAL_ID;
  }

private:
  std::shared_ptr<CredentialState> state_;
};


// The body of Get Secret as Key Vault 7.4 returns it. expSeconds 0 leaves attributes.exp out.
std::string MakeBundle(const std::string& value, const std::string& version,
                       const std::string& contentType = "", int64_t expSeconds = 0)
{
  const std::string exp = expSeconds == 0 ? "" : ",\"exp\":" + std::to_string(expSeconds);
  return "{\"value\":\"" + value + "\",\"contentType\":\"" + contentType +
         "\",\"id\":\"https://myvault.vault.azure.net/secrets/" + SECRET_NAME + "/" + version +
         "\",\"attributes\":{\"enabled\":true" + exp +
         ",\"created\":1690000000,\"updated\":1690000000,\"recoveryLevel\":"
         "\"Recoverable+Purgeable\",\"recoverableDays\":90},\"tags\":{}}";
}


CannedResponse MakeCanned(int status, const std::string& body)
{
  CannedResponse canned;
  canned.status = status;
  canned.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  canned.body = body;
  return canned;
}


std::string GetSecretPath(const std::string& version)
{
  return std::string("/secrets/") + SECRET_NAME + "/" + version + "?api-version=7.4";
}


bool Contains(const std::string& text, const std::string& part)
{
  return text.find(part) != std::string::npos;
}


class KeyVaultTest : public ::testing::Test
{
protected:
  KeyVaultTest()
      : state_(std::make_shared<CredentialState>()),
        tokens_(std::make_shared<TokenCache>(std::make_unique<FakeVaultCredential>(state_)))
  {
  }

  // A trailing slash on the vault URL must not double the slash in the request path.
  std::unique_ptr<KeyVaultClient> MakeClient()
  {
    return std::make_unique<KeyVaultClient>(server_.GetUrl("/"), tokens_, TlsSettings());
  }

  std::unique_ptr<SecretProvider> MakeProvider(const std::string& pinnedVersion = "")
  {
    return std::make_unique<SecretProvider>(MakeClient(), SECRET_NAME, pinnedVersion,
                                            REFRESH_SECONDS);
  }

  std::string GetVaultUrl()
  {
    return server_.GetUrl("");
  }

  // Reads the secret and returns the AzureDicom::Exception that the read throws.
  Exception GetSecretError(const std::string& name = SECRET_NAME, const std::string& version = "")
  {
    try
    {
      MakeClient()->GetSecret(name, version);
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  static Exception RefreshError(SecretProvider& provider, int64_t now)
  {
    try
    {
      provider.Refresh(now);
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  LoopbackHttpServer server_;
  std::shared_ptr<CredentialState> state_;
  std::shared_ptr<TokenCache> tokens_;
};
}  // namespace


TEST_F(KeyVaultTest, ReadsNewestVersion)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));

  const KeyVaultSecret secret = MakeClient()->GetSecret(SECRET_NAME, "");

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("GET", requests[0].method);
  EXPECT_EQ(GetSecretPath(""), requests[0].target);
  EXPECT_EQ("Bearer kv-token-1", requests[0].GetHeader("authorization"));
  EXPECT_EQ("application/json", requests[0].GetHeader("accept"));
  EXPECT_EQ(VALUE_1, secret.value);
  EXPECT_EQ(VERSION_1, secret.version);
  EXPECT_EQ("", secret.contentType);
  EXPECT_TRUE(secret.enabled);
  EXPECT_EQ(0, secret.expiresOn);
}


TEST_F(KeyVaultTest, ReadsPinnedVersion)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));

  const KeyVaultSecret secret = MakeClient()->GetSecret(SECRET_NAME, VERSION_2);

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ(GetSecretPath(VERSION_2), requests[0].target);
  EXPECT_EQ(VALUE_2, secret.value);
  EXPECT_EQ(VERSION_2, secret.version);
}


TEST_F(KeyVaultTest, KeepsContentTypeAndExpiry)
{
  const int64_t expSeconds = NowMs() / SECONDS_MS + 30 * 24 * 3600;
  server_.Enqueue(MakeCanned(200, MakeBundle("TUlJS2VBSUJBekNDQ2o4R0NTcUdTSWIzRFFFSEFhQ0NDakFF",
                                             VERSION_1, "application/x-pkcs12", expSeconds)));

  const KeyVaultSecret secret = MakeClient()->GetSecret(SECRET_NAME, "");

  EXPECT_EQ("application/x-pkcs12", secret.contentType);
  EXPECT_EQ(expSeconds * SECONDS_MS, secret.expiresOn);
  EXPECT_EQ("TUlJS2VBSUJBekNDQ2o4R0NTcUdTSWIzRFFFSEFhQ0NDakFF", secret.value);
}


TEST_F(KeyVaultTest, DecodesEscapedValue)
{
  // A PEM secret arrives with its line breaks escaped in JSON.
  server_.Enqueue(MakeCanned(
      200, MakeBundle("-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n",
                      VERSION_1, "application/x-pem-file")));

  const KeyVaultSecret secret = MakeClient()->GetSecret(SECRET_NAME, "");

  EXPECT_EQ("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n", secret.value);
  EXPECT_EQ("application/x-pem-file", secret.contentType);
}


TEST_F(KeyVaultTest, PinnedVersionMismatchRejected)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));

  const Exception e = GetSecretError(SECRET_NAME, VERSION_1);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_TRUE(Contains(message, std::string("is version ") + VERSION_2)) << message;
  EXPECT_TRUE(Contains(message, std::string("expected the pinned version ") + VERSION_1))
      << message;
  EXPECT_FALSE(Contains(message, VALUE_2)) << message;
}


TEST_F(KeyVaultTest, RetriesOnceAfter401)
{
  CannedResponse rejected = MakeCanned(401, INVALID_ISSUER);
  rejected.headers.push_back({"WWW-Authenticate", CHALLENGE});
  server_.Enqueue(rejected);
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));

  const KeyVaultSecret secret = MakeClient()->GetSecret(SECRET_NAME, "");

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ("Bearer kv-token-1", requests[0].GetHeader("authorization"));
  EXPECT_EQ("Bearer kv-token-2", requests[1].GetHeader("authorization"));
  EXPECT_EQ(2, state_->calls.load());
  EXPECT_EQ(VALUE_1, secret.value);
}


TEST_F(KeyVaultTest, Repeated401Rejected)
{
  for (int i = 0; i < 2; i++)
  {
    CannedResponse rejected = MakeCanned(401, INVALID_ISSUER);
    rejected.headers.push_back({"WWW-Authenticate", CHALLENGE});
    server_.Enqueue(rejected);
  }

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(2u, server_.GetRequests().size());
  EXPECT_EQ(0u, message.find("Key Vault " + GetVaultUrl() + ", secret \"" + SECRET_NAME +
                             "\" (newest version): the vault rejected the token twice"))
      << message;
  EXPECT_TRUE(Contains(message, "AKV10032: Invalid issuer")) << message;
  EXPECT_TRUE(Contains(message, std::string("(tenant ") + TENANT_ID + ")")) << message;
  EXPECT_TRUE(Contains(message, "for the resource https://vault.azure.net")) << message;
  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.Credentials")) << message;
}


TEST_F(KeyVaultTest, RbacForbiddenNamesRole)
{
  server_.Enqueue(MakeCanned(403, RBAC_DENIED));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_TRUE(Contains(message, std::string("the principal ") + PRINCIPAL_ID +
                                    " of the ManagedIdentity credential may not read the secret"))
      << message;
  EXPECT_TRUE(Contains(message, "\"Key Vault Secrets User\"")) << message;
  EXPECT_TRUE(Contains(message, "(inner error ForbiddenByRbac)")) << message;
  EXPECT_FALSE(Contains(message, "access policies")) << message;
  EXPECT_FALSE(Contains(message, "\r")) << message;
  EXPECT_FALSE(Contains(message, "\n")) << message;
}


TEST_F(KeyVaultTest, PolicyForbiddenNamesGet)
{
  server_.Enqueue(MakeCanned(403, POLICY_DENIED));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_TRUE(Contains(message, "does not have secrets get permission")) << message;
  EXPECT_TRUE(Contains(message, "give it the secret permission \"Get\"")) << message;
  EXPECT_FALSE(Contains(message, "Key Vault Secrets User")) << message;
}


TEST_F(KeyVaultTest, UnknownForbiddenGivesBothRemedies)
{
  server_.Enqueue(MakeCanned(403, "{\"error\":{\"code\":\"Forbidden\",\"message\":\"denied\"}}"));

  const std::string message = GetSecretError().what();

  EXPECT_TRUE(Contains(message, "Key Vault Secrets User")) << message;
  EXPECT_TRUE(Contains(message, "\"Get\"")) << message;
}


TEST_F(KeyVaultTest, FirewallForbiddenNamesNetwork)
{
  server_.Enqueue(MakeCanned(
      403,
      "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Public network access is disabled and "
      "request is not from a trusted service nor via an approved private link.\","
      "\"innererror\":{\"code\":\"ForbiddenByConnection\"}}}"));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_TRUE(Contains(message, "network rules rejected this host")) << message;
  EXPECT_FALSE(Contains(message, "is disabled.")) << message;
}


TEST_F(KeyVaultTest, DisabledSecretRejected)
{
  server_.Enqueue(MakeCanned(403, SECRET_DISABLED));

  const Exception e = GetSecretError(SECRET_NAME, VERSION_1);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("Key Vault " + GetVaultUrl() + ", secret \"" + SECRET_NAME +
                             "\" (version " + VERSION_1 + ") is disabled."))
      << message;
  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.SecretVersion")) << message;
  EXPECT_FALSE(Contains(message, "Key Vault Secrets User")) << message;
}


TEST_F(KeyVaultTest, DisabledByMessageOnly)
{
  server_.Enqueue(MakeCanned(403,
                             "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Operation get is "
                             "not allowed on a disabled secret.\"}}"));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_TRUE(Contains(message, "(newest version) is disabled.")) << message;
}


TEST_F(KeyVaultTest, DisabledAttributeRejected)
{
  std::string bundle = MakeBundle(VALUE_1, VERSION_1);
  bundle.replace(bundle.find("\"enabled\":true"), std::string("\"enabled\":true").size(),
                 "\"enabled\":false");
  server_.Enqueue(MakeCanned(200, bundle));

  const Exception e = GetSecretError();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_TRUE(Contains(e.what(), "is disabled")) << e.what();
  EXPECT_FALSE(Contains(e.what(), VALUE_1)) << e.what();
}


TEST_F(KeyVaultTest, NotFoundRejected)
{
  server_.Enqueue(MakeCanned(404, SECRET_NOT_FOUND));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NotFound, e.GetCode());
  EXPECT_TRUE(Contains(message,
                       "(newest version) was not found (HTTP 404: SecretNotFound: A "
                       "secret with (name/id) orthanc-dicom-client-secret was not found"))
      << message;
  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.SecretName")) << message;
}


TEST_F(KeyVaultTest, ExpiredSecretRejected)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1, "", 1600000000)));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_TRUE(
      Contains(message, std::string("version ") + VERSION_1 + " expired at 2020-09-13T12:26:40"))
      << message;
  EXPECT_TRUE(Contains(message, "later expiration date")) << message;
  EXPECT_FALSE(Contains(message, VALUE_1)) << message;
}


TEST_F(KeyVaultTest, InvalidJsonRejected)
{
  server_.Enqueue(MakeCanned(200, std::string("{\"value\":\"") + VALUE_1 + "\",\"id\":"));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_TRUE(Contains(message, "is not a JSON object")) << message;
  EXPECT_TRUE(Contains(message, "Content-Type \"application/json; charset=utf-8\"")) << message;
  EXPECT_FALSE(Contains(message, VALUE_1)) << message;
}


TEST_F(KeyVaultTest, MissingValueRejected)
{
  std::string bundle = MakeBundle(VALUE_1, VERSION_1);
  bundle.replace(0, bundle.find(",\"contentType\"") + 1, "{");
  server_.Enqueue(MakeCanned(200, bundle));

  const Exception e = GetSecretError();

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_TRUE(Contains(e.what(), "has no string \"value\"")) << e.what();
}


TEST_F(KeyVaultTest, MalformedIdRejected)
{
  // The id ends with a part of the value: the message quotes the id, never the value.
  server_.Enqueue(MakeCanned(200, std::string("{\"value\":\"") + VALUE_1 +
                                      "\",\"id\":\"https://myvault.vault.azure.net/keys/" +
                                      VALUE_1 + "\"}"));

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_TRUE(
      Contains(message, std::string("expected {vault}/secrets/") + SECRET_NAME + "/{version}"))
      << message;
  EXPECT_TRUE(Contains(message, "keys/[REDACTED]")) << message;
  EXPECT_FALSE(Contains(message, VALUE_1)) << message;
}


TEST_F(KeyVaultTest, ThrottlingIsNetworkError)
{
  CannedResponse throttled = MakeCanned(
      429,
      "{\"error\":{\"code\":\"Throttled\",\"message\":\"Request was not processed because "
      "too many requests were received.\"}}");
  throttled.headers.push_back({"Retry-After", "7"});
  server_.Enqueue(throttled);

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_TRUE(Contains(message, "the vault returned HTTP 429: Throttled")) << message;
  EXPECT_TRUE(Contains(message, "retry after 7 s")) << message;
}


TEST_F(KeyVaultTest, ServerErrorIsNetworkError)
{
  CannedResponse failure;
  failure.status = 503;
  failure.body = "upstream connect error";
  server_.Enqueue(failure);

  const Exception e = GetSecretError();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_TRUE(Contains(e.what(), "HTTP 503: upstream connect error")) << e.what();
}


TEST_F(KeyVaultTest, RedirectNamesVaultUrl)
{
  CannedResponse moved;
  moved.status = 301;
  moved.headers = {{"Location", "https://myvault.vault.azure.net/secrets/x/"}};
  server_.Enqueue(moved);

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_TRUE(Contains(message, "HTTP 301: (empty body)")) << message;
  EXPECT_TRUE(Contains(message,
                       "redirected the request to "
                       "\"https://myvault.vault.azure.net/secrets/x/\""))
      << message;
  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.VaultUrl")) << message;
}


TEST_F(KeyVaultTest, EchoedValueRedacted)
{
  server_.Enqueue(MakeCanned(500, std::string("{\"error\":{\"code\":\"InternalError\","
                                              "\"message\":\"could not store ") +
                                      VALUE_1 + "\"},\"value\":\"" + VALUE_1 + "\"}"));

  const std::string message = GetSecretError().what();

  EXPECT_FALSE(Contains(message, VALUE_1)) << message;
  EXPECT_TRUE(Contains(message, "could not store [REDACTED]")) << message;
}


TEST_F(KeyVaultTest, RefusedPortNamesVault)
{
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in address = LoopbackHttpServer::MakeLoopbackAddress(0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(0, bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  ASSERT_EQ(0, getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length));
  const std::string vaultUrl = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));

  KeyVaultClient client(vaultUrl, tokens_, TlsSettings());
  std::string message;
  ErrorCode code = ErrorCode::InternalError;
  try
  {
    client.GetSecret(SECRET_NAME, "");
  }
  catch (const Exception& e)
  {
    message = e.what();
    code = e.GetCode();
  }
  close(holder);

  EXPECT_EQ(ErrorCode::NetworkError, code);
  EXPECT_EQ(0u, message.find("Key Vault " + vaultUrl + ", secret \"" + SECRET_NAME +
                             "\" (newest version): GET " + vaultUrl + GetSecretPath("")))
      << message;
}


TEST_F(KeyVaultTest, TokenFailureNamesVault)
{
  state_->fail = true;

  const Exception e = GetSecretError();
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("Key Vault " + GetVaultUrl())) << message;
  EXPECT_TRUE(Contains(message, "failed to get a token for the vault: ManagedIdentity credential"))
      << message;
  EXPECT_EQ(0u, server_.GetRequests().size());
}


TEST_F(KeyVaultTest, InvalidNameRejected)
{
  const Exception badName = GetSecretError("secrets/../keys", "");
  const Exception badVersion = GetSecretError(SECRET_NAME, "v1?api-version=1");

  EXPECT_EQ(ErrorCode::BadConfiguration, badName.GetCode());
  EXPECT_EQ(ErrorCode::BadConfiguration, badVersion.GetCode());
  EXPECT_TRUE(Contains(badName.what(), "\"secrets/../keys\"")) << badName.what();
  EXPECT_EQ(0u, server_.GetRequests().size());
}


TEST_F(KeyVaultTest, EmptyVaultUrlRejected)
{
  try
  {
    KeyVaultClient client("", tokens_, TlsSettings());
    FAIL() << "expected an exception";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
    EXPECT_TRUE(Contains(e.what(), "AzureDicom.Credentials.KeyVault.VaultUrl is empty"))
        << e.what();
  }
}


TEST_F(KeyVaultTest, ProviderCachesWithinRefresh)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  auto provider = MakeProvider();

  const KeyVaultSecret first = provider->GetSecret(START_MS);
  const KeyVaultSecret second = provider->GetSecret(START_MS + REFRESH_MS - 1);

  EXPECT_EQ(1u, server_.GetRequests().size());
  EXPECT_EQ(VALUE_1, first.value);
  EXPECT_EQ(VALUE_1, second.value);
}


TEST_F(KeyVaultTest, ProviderRereadsAfterRefresh)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  auto provider = MakeProvider();

  provider->GetSecret(START_MS);
  const KeyVaultSecret secret = provider->GetSecret(START_MS + REFRESH_MS);

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ(GetSecretPath(""), requests[1].target);
  EXPECT_EQ(VALUE_2, secret.value);
  EXPECT_EQ(VERSION_2, provider->GetStatus().versionInUse);
  EXPECT_EQ(START_MS + REFRESH_MS, provider->GetStatus().readAt);
}


TEST_F(KeyVaultTest, ProviderRereadsExpiredSecret)
{
  const int64_t expSeconds = NowMs() / SECONDS_MS + 3600;
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1, "", expSeconds)));
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  auto provider = MakeProvider();

  // The provider's clock is simulated, so the held secret expires long before refreshSeconds.
  const int64_t readAt = expSeconds * SECONDS_MS - 1000;
  provider->GetSecret(readAt);
  const KeyVaultSecret secret = provider->GetSecret(expSeconds * SECONDS_MS);

  EXPECT_EQ(2u, server_.GetRequests().size());
  EXPECT_EQ(VALUE_2, secret.value);
}


TEST_F(KeyVaultTest, ProviderRefreshReportsRotation)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  auto provider = MakeProvider();
  provider->GetSecret(START_MS);

  const bool rotated = provider->Refresh(START_MS + 1000);
  const bool rotatedAgain = provider->Refresh(START_MS + 2000);

  EXPECT_TRUE(rotated);
  EXPECT_FALSE(rotatedAgain);
  EXPECT_EQ(3u, server_.GetRequests().size());
  EXPECT_EQ(VALUE_2, provider->GetSecret(START_MS + 3000).value);
  EXPECT_EQ(3u, server_.GetRequests().size());
  EXPECT_EQ(START_MS + 2000, provider->GetStatus().readAt);
}


TEST_F(KeyVaultTest, ProviderPinnedVersionKept)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  // A vault or proxy that ignores the version in the path and offers a newer one.
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  auto provider = MakeProvider(VERSION_1);

  provider->GetSecret(START_MS);
  const bool rotated = provider->Refresh(START_MS + 1000);
  const Exception e = RefreshError(*provider, START_MS + 2000);
  const KeyVaultSecret secret = provider->GetSecret(START_MS + 3000);

  EXPECT_FALSE(rotated);
  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_EQ(VALUE_1, secret.value);
  EXPECT_EQ(VERSION_1, provider->GetStatus().versionInUse);
  const auto requests = server_.GetRequests();
  ASSERT_EQ(3u, requests.size());
  for (const RecordedRequest& request : requests)
  {
    EXPECT_EQ(GetSecretPath(VERSION_1), request.target);
  }
}


TEST_F(KeyVaultTest, ProviderKeepsSecretOnFailure)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  CannedResponse outage;
  outage.status = 503;
  outage.body = "Service Unavailable";
  server_.Enqueue(outage);
  auto provider = MakeProvider();
  provider->GetSecret(START_MS);

  const KeyVaultSecret secret = provider->GetSecret(START_MS + REFRESH_MS);
  const SecretStatus status = provider->GetStatus();

  EXPECT_EQ(2u, server_.GetRequests().size());
  EXPECT_EQ(VALUE_1, secret.value);
  EXPECT_EQ(VERSION_1, status.versionInUse);
  EXPECT_TRUE(Contains(status.lastError, "HTTP 503: Service Unavailable")) << status.lastError;
  EXPECT_EQ(START_MS, status.readAt);
  EXPECT_EQ(START_MS + REFRESH_MS, status.lastAttemptAt);
}


TEST_F(KeyVaultTest, ProviderRetriesFailedReadLater)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  server_.Enqueue(MakeCanned(503, "{}"));
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  auto provider = MakeProvider();
  provider->GetSecret(START_MS);
  const int64_t failedAt = START_MS + REFRESH_MS;
  provider->GetSecret(failedAt);

  const KeyVaultSecret soon = provider->GetSecret(failedAt + FAILED_READ_RETRY_MS - 1);
  const size_t requestsSoon = server_.GetRequests().size();
  const KeyVaultSecret later = provider->GetSecret(failedAt + FAILED_READ_RETRY_MS);

  EXPECT_EQ(2u, requestsSoon);
  EXPECT_EQ(VALUE_1, soon.value);
  EXPECT_EQ(3u, server_.GetRequests().size());
  EXPECT_EQ(VALUE_2, later.value);
  EXPECT_EQ("", provider->GetStatus().lastError);
}


TEST_F(KeyVaultTest, ProviderThrowsWithoutSecret)
{
  server_.Enqueue(MakeCanned(404, SECRET_NOT_FOUND));
  auto provider = MakeProvider();

  ErrorCode code = ErrorCode::InternalError;
  try
  {
    provider->GetSecret(START_MS);
  }
  catch (const Exception& e)
  {
    code = e.GetCode();
  }

  const SecretStatus status = provider->GetStatus();
  EXPECT_EQ(ErrorCode::NotFound, code);
  EXPECT_TRUE(Contains(status.lastError, "was not found")) << status.lastError;
  EXPECT_EQ("", status.versionInUse);
  EXPECT_EQ(0, status.readAt);
  EXPECT_EQ(START_MS, status.lastAttemptAt);
}


TEST_F(KeyVaultTest, ProviderRefreshFailureRecorded)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  server_.Enqueue(MakeCanned(403, RBAC_DENIED));
  auto provider = MakeProvider();
  provider->GetSecret(START_MS);

  const Exception e = RefreshError(*provider, START_MS + 1000);

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(std::string(e.what()), provider->GetStatus().lastError);
  EXPECT_EQ(VALUE_1, provider->GetSecret(START_MS + 2000).value);
  EXPECT_EQ(2u, server_.GetRequests().size());
}


TEST_F(KeyVaultTest, ProviderStatusFields)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  auto provider = MakeProvider(VERSION_1);

  provider->GetSecret(START_MS);
  const SecretStatus status = provider->GetStatus();

  EXPECT_EQ(GetVaultUrl(), status.vaultUrl);
  EXPECT_EQ(SECRET_NAME, status.secretName);
  EXPECT_EQ(VERSION_1, status.pinnedVersion);
  EXPECT_EQ(VERSION_1, status.versionInUse);
  EXPECT_EQ("", status.lastError);
  EXPECT_EQ(START_MS, status.readAt);
  EXPECT_EQ(START_MS, status.lastAttemptAt);
}


TEST_F(KeyVaultTest, ProviderStatusNeverHasValue)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  // A proxy that repeats the secret it saw earlier in its error page.
  CannedResponse echo;
  echo.status = 502;
  echo.body = std::string("<html>cached body: {\"value\":\"") + VALUE_1 + "\"}</html>";
  server_.Enqueue(echo);
  auto provider = MakeProvider();
  provider->GetSecret(START_MS);

  const Exception e = RefreshError(*provider, START_MS + 1000);
  const SecretStatus status = provider->GetStatus();

  EXPECT_FALSE(Contains(e.what(), VALUE_1)) << e.what();
  EXPECT_FALSE(Contains(status.lastError, VALUE_1)) << status.lastError;
  EXPECT_TRUE(Contains(status.lastError, "[REDACTED]")) << status.lastError;
  EXPECT_FALSE(Contains(status.vaultUrl + status.secretName + status.versionInUse, VALUE_1));
}


TEST_F(KeyVaultTest, ProviderConcurrentReadsShareOne)
{
  CannedResponse slow = MakeCanned(200, MakeBundle(VALUE_1, VERSION_1));
  slow.delayMs = 300;
  server_.Enqueue(slow);
  auto provider = MakeProvider();

  std::vector<std::string> values(THREAD_COUNT);
  std::vector<std::thread> threads;
  for (int i = 0; i < THREAD_COUNT; i++)
  {
    threads.emplace_back(
        [&provider, &values, i]
        {
          try
          {
            values[i] = provider->GetSecret(START_MS).value;
          }
          catch (const Exception& e)
          {
            values[i] = std::string("exception: ") + e.what();
          }
        });
  }
  for (std::thread& thread : threads)
  {
    thread.join();
  }

  EXPECT_EQ(1u, server_.GetRequests().size());
  for (const std::string& value : values)
  {
    EXPECT_EQ(VALUE_1, value);
  }
}


TEST_F(KeyVaultTest, ProviderRefreshStormSendsOneMore)
{
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_1, VERSION_1)));
  CannedResponse slow = MakeCanned(200, MakeBundle(VALUE_2, VERSION_2));
  slow.delayMs = 1000;
  server_.Enqueue(slow);
  server_.Enqueue(MakeCanned(200, MakeBundle(VALUE_2, VERSION_2)));
  auto provider = MakeProvider();
  provider->GetSecret(START_MS);

  // The first Refresh is still waiting for its response when the others start. They cannot
  // reuse it, because it may have started before the rotation they saw, so one of them reads
  // once more and the rest reuse that read.
  std::atomic<int> rotatedCount{0};
  std::atomic<int> failureCount{0};
  auto refresh = [&provider, &rotatedCount, &failureCount]
  {
    try
    {
      if (provider->Refresh(START_MS + 1000))
      {
        rotatedCount++;
      }
    }
    catch (const Exception&)
    {
      failureCount++;
    }
  };
  std::thread first(refresh);
  while (server_.GetRequests().size() < 2)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::vector<std::thread> others;
  for (int i = 1; i < THREAD_COUNT; i++)
  {
    others.emplace_back(refresh);
  }
  first.join();
  for (std::thread& thread : others)
  {
    thread.join();
  }

  EXPECT_EQ(3u, server_.GetRequests().size());
  EXPECT_EQ(0, failureCount.load());
  EXPECT_EQ(THREAD_COUNT, rotatedCount.load());
  EXPECT_EQ(VERSION_2, provider->GetStatus().versionInUse);
}


TEST_F(KeyVaultTest, RejectedSecretErrors)
{
  const std::vector<std::string> rejected = {
      "ClientSecret credential: the token request to https://login.microsoftonline.com/"
      "72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token failed with HTTP 401: "
      "invalid_client: AADSTS7000215: Invalid client secret provided. Ensure the secret being "
      "sent in the request is the client secret value, not the client secret ID.",
      "invalid_client: AADSTS7000222: The provided client secret keys for app "
      "'11111111-2222-3333-4444-555555555555' are expired. Visit the Azure portal to create new "
      "keys for your app: https://aka.ms/NewClientSecret",
      "invalid_client: AADSTS700027: Client assertion failed signature validation.",
      "invalid_client: AADSTS700024: Client assertion is not within its valid time range.",
      "invalid_client: AADSTS70002: Error validating credentials. AADSTS50012: Invalid client "
      "secret is provided.",
  };
  for (const std::string& message : rejected)
  {
    EXPECT_TRUE(IsRejectedSecretError(message)) << message;
  }
}


TEST_F(KeyVaultTest, OtherErrorsNotRejectedSecret)
{
  const std::vector<std::string> others = {
      "",
      "unauthorized_client: AADSTS700016: Application with identifier "
      "'11111111-2222-3333-4444-555555555555' was not found in the directory.",
      "invalid_request: AADSTS900144: The request body must contain the following parameter: "
      "'grant_type'.",
      // AADSTS500121 starts with the digits of AADSTS50012 but is another code.
      "AADSTS500121: Authentication failed during strong authentication request.",
      "Key Vault https://myvault.vault.azure.net, secret \"s\" (newest version) is disabled.",
  };
  for (const std::string& message : others)
  {
    EXPECT_FALSE(IsRejectedSecretError(message)) << message;
  }
}
