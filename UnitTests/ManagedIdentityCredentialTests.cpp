#include "Azure/ManagedIdentityCredential.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace AzureDicom;
using namespace AzureDicom::Testing;

namespace
{
const char SCOPE[] = "https://dicom.healthcareapis.azure.com/.default";
const char RESOURCE[] = "https://dicom.healthcareapis.azure.com";
const char CLIENT_ID[] = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const char IDENTITY_HEADER[] = "a3f1c0de-identity-header-9b2e";
const char ARC_KEY[] = "c2VjcmV0LWFyYy1rZXktY29udGVudA";
const char TOKEN_PATH[] = "/metadata/identity/oauth2/token";
const char APP_SERVICE_PATH[] = "/msi/token";
const int64_t MS_PER_SECOND = 1000;
const size_t MAX_ARC_KEY_BYTES = 4096;

// 2099-06-20 14:57:58 UTC, far enough in the future to stay valid.
const int64_t EXPIRY_SECONDS = 4085650678;

// The shape of the instance metadata endpoint's response, with numbers as strings.
const char VM_TOKEN_ANSWER[] =
    "{\"access_token\":\"eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ2bSJ9.c2ln\",\"client_id\":"
    "\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\",\"expires_in\":\"86399\",\"expires_on\":"
    "\"4085650678\",\"ext_expires_in\":\"86399\",\"not_before\":\"4085564278\",\"resource\":"
    "\"https://dicom.healthcareapis.azure.com\",\"token_type\":\"Bearer\"}";


CannedResponse MakeCanned(int status, const std::string& body)
{
  CannedResponse canned;
  canned.status = status;
  canned.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  canned.body = body;
  return canned;
}


CannedResponse MakeTokenAnswer(const std::string& token, const std::string& expiresOn)
{
  return MakeCanned(200, "{\"access_token\":\"" + token + "\",\"expires_on\":" + expiresOn +
                             ",\"resource\":\"https://dicom.healthcareapis.azure.com\","
                             "\"token_type\":\"Bearer\"}");
}


CannedResponse MakeChallenge(const std::string& header)
{
  CannedResponse canned;
  canned.status = 401;
  if (!header.empty())
  {
    canned.headers = {{"WWW-Authenticate", header}};
  }
  canned.body = "{\"error\":\"unauthorized\"}";
  return canned;
}


std::string GetPath(const RecordedRequest& request)
{
  return request.target.substr(0, request.target.find('?'));
}


std::map<std::string, std::string> GetQuery(const RecordedRequest& request)
{
  const size_t question = request.target.find('?');
  return question == std::string::npos ? std::map<std::string, std::string>()
                                       : ParseFormBody(request.target.substr(question + 1));
}


void WriteFile(const std::filesystem::path& path, const std::string& content)
{
  std::ofstream file(path, std::ios::binary);
  file << content;
  ASSERT_TRUE(file.good()) << path;
}


// Sets an environment variable for the life of the object and then restores it.
class ScopedVariable
{
public:
  ScopedVariable(const char* name, const char* value) : name_(name)
  {
    const char* previous = getenv(name);
    hadValue_ = previous != nullptr;
    previous_ = hadValue_ ? previous : "";
    setenv(name, value, 1);
  }

  ~ScopedVariable()
  {
    if (hadValue_)
    {
      setenv(name_.c_str(), previous_.c_str(), 1);
    }
    else
    {
      unsetenv(name_.c_str());
    }
  }

  ScopedVariable(const ScopedVariable&) = delete;
  ScopedVariable& operator=(const ScopedVariable&) = delete;

private:
  std::string name_;
  std::string previous_;
  bool hadValue_;
};


// Every environment of these tests points at the loopback server: the instance metadata
// address of Azure VMs must never receive a request from a test.
class ManagedIdentityCredentialTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "managed-identity-test-XXXXXX").string();
    ASSERT_NE(nullptr, mkdtemp(&pattern[0]));
    base_ = pattern;
    folder_ = base_ / "tokens";
    outside_ = base_ / "other";
    std::filesystem::create_directory(folder_);
    std::filesystem::create_directory(outside_);
  }

  void TearDown() override
  {
    std::error_code ignored;
    std::filesystem::remove_all(base_, ignored);
  }

  ManagedIdentityEnvironment MakeVmEnvironment()
  {
    ManagedIdentityEnvironment environment;
    environment.podIdentityAuthorityHost = server_.GetUrl("");
    return environment;
  }

  ManagedIdentityEnvironment MakeAppServiceEnvironment()
  {
    ManagedIdentityEnvironment environment;
    environment.identityEndpoint = server_.GetUrl(APP_SERVICE_PATH);
    environment.identityHeader = IDENTITY_HEADER;
    environment.podIdentityAuthorityHost = server_.GetUrl("");
    return environment;
  }

  ManagedIdentityEnvironment MakeArcEnvironment()
  {
    ManagedIdentityEnvironment environment;
    environment.identityEndpoint = server_.GetUrl(TOKEN_PATH);
    environment.imdsEndpoint = server_.GetUrl("");
    environment.podIdentityAuthorityHost = server_.GetUrl("");
    return environment;
  }

  std::unique_ptr<ManagedIdentityCredential> MakeCredential(
      const ManagedIdentityEnvironment& environment, const std::string& clientId = "")
  {
    return std::make_unique<ManagedIdentityCredential>(clientId, SCOPE, environment, TlsSettings(),
                                                       folder_.string());
  }

  // Requests a token and returns the AzureDicom::Exception that it throws.
  static Exception RequestTokenError(ManagedIdentityCredential& credential)
  {
    try
    {
      credential.RequestToken();
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  static Exception ConstructionError(const ManagedIdentityEnvironment& environment,
                                     const std::string& clientId, const std::string& scope)
  {
    try
    {
      ManagedIdentityCredential credential(clientId, scope, environment, TlsSettings());
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  // Responds to the first Arc request with the challenge header given, and returns the message
  // of the rejection. The key must not be sent, and the message must not contain it.
  std::string ExpectArcRejection(const std::string& challenge)
  {
    server_.Enqueue(MakeChallenge(challenge));
    server_.Enqueue(MakeTokenAnswer("must-not-be-requested", std::to_string(EXPIRY_SECONDS)));
    auto credential = MakeCredential(MakeArcEnvironment());

    const Exception e = RequestTokenError(*credential);
    const std::string message = e.what();

    EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode()) << message;
    EXPECT_EQ(1u, server_.GetRequests().size()) << message;
    EXPECT_EQ(0u, message.find("ManagedIdentity credential (AzureArc): ")) << message;
    EXPECT_EQ(std::string::npos, message.find(ARC_KEY)) << message;
    return message;
  }

  std::string WriteKey(const std::filesystem::path& path)
  {
    WriteFile(path, ARC_KEY);
    return path.string();
  }

  LoopbackHttpServer server_;
  std::filesystem::path base_;
  std::filesystem::path folder_;
  std::filesystem::path outside_;
};
}  // namespace


TEST_F(ManagedIdentityCredentialTest, VmRequest)
{
  server_.Enqueue(MakeCanned(200, VM_TOKEN_ANSWER));
  auto credential = MakeCredential(MakeVmEnvironment());

  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("GET", requests[0].method);
  EXPECT_EQ(TOKEN_PATH, GetPath(requests[0]));
  EXPECT_EQ("true", requests[0].GetHeader("metadata"));
  EXPECT_FALSE(requests[0].HasHeader("authorization"));
  EXPECT_FALSE(requests[0].HasHeader("x-identity-header"));

  const auto query = GetQuery(requests[0]);
  EXPECT_EQ(2u, query.size());
  EXPECT_EQ("2018-02-01", query.at("api-version"));
  EXPECT_EQ(RESOURCE, query.at("resource"));
}


TEST_F(ManagedIdentityCredentialTest, VmParsesToken)
{
  server_.Enqueue(MakeCanned(200, VM_TOKEN_ANSWER));
  auto credential = MakeCredential(MakeVmEnvironment());

  const int64_t before = NowMs();
  const AccessToken token = credential->RequestToken();
  const int64_t after = NowMs();

  EXPECT_EQ("eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ2bSJ9.c2ln", token.value);
  EXPECT_GE(token.expiresOn, before + 86399 * MS_PER_SECOND);
  EXPECT_LE(token.expiresOn, after + 86399 * MS_PER_SECOND);
}


TEST_F(ManagedIdentityCredentialTest, VmUserAssigned)
{
  server_.Enqueue(MakeCanned(200, VM_TOKEN_ANSWER));
  auto credential = MakeCredential(MakeVmEnvironment(), CLIENT_ID);

  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  const auto query = GetQuery(requests[0]);
  EXPECT_EQ(3u, query.size());
  EXPECT_EQ(CLIENT_ID, query.at("client_id"));
  EXPECT_EQ(RESOURCE, query.at("resource"));
  EXPECT_EQ(CLIENT_ID, credential->GetPrincipal());
}


TEST_F(ManagedIdentityCredentialTest, AppServiceRequest)
{
  server_.Enqueue(MakeTokenAnswer("app-service-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeAppServiceEnvironment());

  const AccessToken token = credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("GET", requests[0].method);
  EXPECT_EQ(APP_SERVICE_PATH, GetPath(requests[0]));
  EXPECT_EQ(IDENTITY_HEADER, requests[0].GetHeader("x-identity-header"));
  EXPECT_FALSE(requests[0].HasHeader("metadata"));

  const auto query = GetQuery(requests[0]);
  EXPECT_EQ(2u, query.size());
  EXPECT_EQ("2019-08-01", query.at("api-version"));
  EXPECT_EQ(RESOURCE, query.at("resource"));
  EXPECT_EQ("app-service-token", token.value);
}


TEST_F(ManagedIdentityCredentialTest, AppServiceUserAssigned)
{
  server_.Enqueue(MakeTokenAnswer("app-service-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeAppServiceEnvironment(), CLIENT_ID);

  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  const auto query = GetQuery(requests[0]);
  EXPECT_EQ(3u, query.size());
  EXPECT_EQ(CLIENT_ID, query.at("client_id"));
}


TEST_F(ManagedIdentityCredentialTest, ArcChallenge)
{
  const std::string keyPath = WriteKey(folder_ / "6f1b1c2d.key");
  server_.Enqueue(MakeChallenge("Basic realm=" + keyPath));
  server_.Enqueue(MakeTokenAnswer("arc-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeArcEnvironment());

  const AccessToken token = credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  for (const RecordedRequest& request : requests)
  {
    EXPECT_EQ("GET", request.method);
    EXPECT_EQ(TOKEN_PATH, GetPath(request));
    EXPECT_EQ("true", request.GetHeader("metadata"));
    const auto query = GetQuery(request);
    EXPECT_EQ(2u, query.size());
    EXPECT_EQ("2020-06-01", query.at("api-version"));
    EXPECT_EQ(RESOURCE, query.at("resource"));
  }

  EXPECT_FALSE(requests[0].HasHeader("authorization"));
  EXPECT_EQ(std::string("Basic ") + ARC_KEY, requests[1].GetHeader("authorization"));
  EXPECT_EQ("arc-token", token.value);
  EXPECT_EQ(EXPIRY_SECONDS * MS_PER_SECOND, token.expiresOn);
}


TEST_F(ManagedIdentityCredentialTest, ArcQuotedRealm)
{
  const std::string keyPath = WriteKey(folder_ / "quoted.key");
  server_.Enqueue(MakeChallenge("basic REALM=\"" + keyPath + "\""));
  server_.Enqueue(MakeTokenAnswer("arc-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeArcEnvironment());

  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ(std::string("Basic ") + ARC_KEY, requests[1].GetHeader("authorization"));
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyNewlineTrimmed)
{
  const std::filesystem::path keyPath = folder_ / "newline.key";
  WriteFile(keyPath, std::string(ARC_KEY) + "\n");
  server_.Enqueue(MakeChallenge("Basic realm=" + keyPath.string()));
  server_.Enqueue(MakeTokenAnswer("arc-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeArcEnvironment());

  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ(std::string("Basic ") + ARC_KEY, requests[1].GetHeader("authorization"));
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyAtLimit)
{
  const std::filesystem::path keyPath = folder_ / "limit.key";
  const std::string key(MAX_ARC_KEY_BYTES, 'k');
  WriteFile(keyPath, key);
  server_.Enqueue(MakeChallenge("Basic realm=" + keyPath.string()));
  server_.Enqueue(MakeTokenAnswer("arc-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeArcEnvironment());

  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ("Basic " + key, requests[1].GetHeader("authorization"));
}


TEST_F(ManagedIdentityCredentialTest, ArcWithoutChallenge)
{
  server_.Enqueue(MakeTokenAnswer("arc-token", "\"4085650678\""));
  auto credential = MakeCredential(MakeArcEnvironment());

  const AccessToken token = credential->RequestToken();

  EXPECT_EQ(1u, server_.GetRequests().size());
  EXPECT_EQ("arc-token", token.value);
}


TEST_F(ManagedIdentityCredentialTest, ArcOutsideFolder)
{
  const std::string keyPath = WriteKey(outside_ / "stolen.key");

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath);

  EXPECT_NE(std::string::npos, message.find("outside the key folder")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcDotDotEscape)
{
  WriteKey(outside_ / "stolen.key");
  const std::string escaping = (folder_ / ".." / "other" / "stolen.key").string();

  const std::string message = ExpectArcRejection("Basic realm=" + escaping);

  EXPECT_NE(std::string::npos, message.find("outside the key folder")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcSymlinkEscape)
{
  const std::string target = WriteKey(outside_ / "stolen.key");
  const std::filesystem::path link = folder_ / "link.key";
  std::filesystem::create_symlink(target, link);

  const std::string message = ExpectArcRejection("Basic realm=" + link.string());

  EXPECT_NE(std::string::npos, message.find("outside the key folder")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcSymlinkedFolder)
{
  // The folder itself may be a link (an agent installed elsewhere): the rule compares the
  // resolved paths, so a key inside the link's target is accepted.
  const std::filesystem::path linkedFolder = base_ / "linked";
  std::filesystem::create_directory_symlink(folder_, linkedFolder);
  const std::string keyPath = WriteKey(folder_ / "inside.key");
  server_.Enqueue(MakeChallenge("Basic realm=" + keyPath));
  server_.Enqueue(MakeTokenAnswer("arc-token", "\"4085650678\""));
  ManagedIdentityCredential credential("", SCOPE, MakeArcEnvironment(), TlsSettings(),
                                       linkedFolder.string());

  const AccessToken token = credential.RequestToken();

  EXPECT_EQ("arc-token", token.value);
}


TEST_F(ManagedIdentityCredentialTest, ArcNotKeyFile)
{
  const std::string keyPath = WriteKey(folder_ / "token.txt");

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath);

  EXPECT_NE(std::string::npos, message.find("does not end in .key")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyTooLarge)
{
  const std::filesystem::path keyPath = folder_ / "large.key";
  WriteFile(keyPath, std::string(ARC_KEY) + std::string(MAX_ARC_KEY_BYTES, 'k'));

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath.string());

  EXPECT_NE(std::string::npos, message.find("is larger than 4096 bytes")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyMissing)
{
  const std::string message =
      ExpectArcRejection("Basic realm=" + (folder_ / "absent.key").string());

  EXPECT_NE(std::string::npos, message.find("does not exist")) << message;
  EXPECT_NE(std::string::npos, message.find("absent.key")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyEmpty)
{
  const std::filesystem::path keyPath = folder_ / "empty.key";
  WriteFile(keyPath, "\n");

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath.string());

  EXPECT_NE(std::string::npos, message.find("is empty")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyDirectory)
{
  const std::filesystem::path keyPath = folder_ / "folder.key";
  std::filesystem::create_directory(keyPath);

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath.string());

  EXPECT_NE(std::string::npos, message.find("is not a regular file")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyFifo)
{
  const std::filesystem::path keyPath = folder_ / "pipe.key";
  ASSERT_EQ(0, mkfifo(keyPath.c_str(), 0600));

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath.string());

  EXPECT_NE(std::string::npos, message.find("is not a regular file")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcKeyLineBreak)
{
  const std::filesystem::path keyPath = folder_ / "injected.key";
  WriteFile(keyPath, std::string(ARC_KEY) + "\r\nX-Injected: 1");

  const std::string message = ExpectArcRejection("Basic realm=" + keyPath.string());

  EXPECT_NE(std::string::npos, message.find("contains control characters")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcRelativeRealm)
{
  WriteKey(folder_ / "relative.key");

  const std::string message = ExpectArcRejection("Basic realm=tokens/relative.key");

  EXPECT_NE(std::string::npos, message.find("is not an absolute path")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcNoChallengeHeader)
{
  const std::string message = ExpectArcRejection("");

  EXPECT_NE(std::string::npos, message.find("has no WWW-Authenticate header")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcOtherScheme)
{
  const std::string keyPath = WriteKey(folder_ / "bearer.key");

  const std::string message = ExpectArcRejection("Bearer realm=" + keyPath);

  EXPECT_NE(std::string::npos, message.find("which has no Basic realm")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcNoRealm)
{
  const std::string message = ExpectArcRejection("Basic charset=\"UTF-8\"");

  EXPECT_NE(std::string::npos, message.find("which has no Basic realm")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcSecondRejection)
{
  const std::string keyPath = WriteKey(folder_ / "rejected.key");
  server_.Enqueue(MakeChallenge("Basic realm=" + keyPath));
  server_.Enqueue(MakeCanned(401, std::string("{\"error\":\"unauthorized\",\"error_description\":"
                                              "\"key ") +
                                      ARC_KEY + " is not valid\"}"));
  auto credential = MakeCredential(MakeArcEnvironment());

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(2u, server_.GetRequests().size());
  EXPECT_NE(std::string::npos, message.find("HTTP 401")) << message;
  EXPECT_EQ(std::string::npos, message.find(ARC_KEY)) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcUserAssignedRejected)
{
  const Exception e = ConstructionError(MakeArcEnvironment(), CLIENT_ID, SCOPE);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("ManagedIdentity credential (AzureArc)")) << message;
  EXPECT_NE(std::string::npos, message.find(CLIENT_ID)) << message;
  EXPECT_NE(std::string::npos, message.find("system-assigned")) << message;
  EXPECT_TRUE(server_.GetRequests().empty());
}


TEST_F(ManagedIdentityCredentialTest, ExpiresOnNumber)
{
  server_.Enqueue(MakeTokenAnswer("t", std::to_string(EXPIRY_SECONDS)));

  const AccessToken token = MakeCredential(MakeAppServiceEnvironment())->RequestToken();

  EXPECT_EQ(EXPIRY_SECONDS * MS_PER_SECOND, token.expiresOn);
}


TEST_F(ManagedIdentityCredentialTest, ExpiresOnString)
{
  server_.Enqueue(MakeTokenAnswer("t", "\"" + std::to_string(EXPIRY_SECONDS) + "\""));

  const AccessToken token = MakeCredential(MakeAppServiceEnvironment())->RequestToken();

  EXPECT_EQ(EXPIRY_SECONDS * MS_PER_SECOND, token.expiresOn);
}


TEST_F(ManagedIdentityCredentialTest, ExpiresOnAppServiceDate)
{
  server_.Enqueue(MakeTokenAnswer("t", "\"6/20/2099 2:57:58 PM +00:00\""));

  const AccessToken token = MakeCredential(MakeAppServiceEnvironment())->RequestToken();

  EXPECT_EQ(EXPIRY_SECONDS * MS_PER_SECOND, token.expiresOn);
}


TEST_F(ManagedIdentityCredentialTest, ExpiresOnMidnightHour)
{
  // 12 AM is the hour 0: 2099-06-20 00:57:58 UTC.
  server_.Enqueue(MakeTokenAnswer("t", "\"6/20/2099 12:57:58 AM +00:00\""));

  const AccessToken token = MakeCredential(MakeAppServiceEnvironment())->RequestToken();

  EXPECT_EQ(4085600278 * MS_PER_SECOND, token.expiresOn);
}


TEST_F(ManagedIdentityCredentialTest, ExpiresOnDateOffset)
{
  // 14:57:58 at +02:00 is 12:57:58 UTC.
  server_.Enqueue(MakeTokenAnswer("t", "\"06/20/2099 14:57:58 +02:00\""));

  const AccessToken token = MakeCredential(MakeAppServiceEnvironment())->RequestToken();

  EXPECT_EQ(4085643478 * MS_PER_SECOND, token.expiresOn);
}


TEST_F(ManagedIdentityCredentialTest, ExpiresOnInvalidDate)
{
  server_.Enqueue(MakeTokenAnswer("t", "\"13/20/2099 2:57:58 PM +00:00\""));
  auto credential = MakeCredential(MakeAppServiceEnvironment());

  const Exception e = RequestTokenError(*credential);

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode()) << e.what();
}


TEST_F(ManagedIdentityCredentialTest, IdentityNotFound)
{
  server_.Enqueue(MakeCanned(
      400, "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}"));
  auto credential = MakeCredential(MakeVmEnvironment(), CLIENT_ID);

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("ManagedIdentity credential (VirtualMachine): the token request to " +
                             server_.GetUrl(TOKEN_PATH) +
                             " failed with HTTP 400: invalid_request: Identity not found"))
      << message;
}


TEST_F(ManagedIdentityCredentialTest, PlainTextError)
{
  CannedResponse failure;
  failure.status = 500;
  failure.body = "The managed identity endpoint\r\nis restarting";
  server_.Enqueue(failure);
  auto credential = MakeCredential(MakeAppServiceEnvironment());

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("ManagedIdentity credential (AppService): ")) << message;
  EXPECT_NE(std::string::npos, message.find("HTTP 500")) << message;
  EXPECT_NE(std::string::npos, message.find("The managed identity endpoint is restarting"))
      << message;
  EXPECT_EQ(std::string::npos, message.find('\n')) << message;
}


TEST_F(ManagedIdentityCredentialTest, IdentityHeaderRedacted)
{
  server_.Enqueue(MakeCanned(400, std::string("{\"error\":\"invalid_request\","
                                              "\"error_description\":\"header ") +
                                      IDENTITY_HEADER + " is not valid\"}"));
  auto credential = MakeCredential(MakeAppServiceEnvironment());

  const std::string message = RequestTokenError(*credential).what();

  EXPECT_EQ(std::string::npos, message.find(IDENTITY_HEADER)) << message;
  EXPECT_NE(std::string::npos, message.find("header [REDACTED] is not valid")) << message;
}


TEST_F(ManagedIdentityCredentialTest, NoAccessToken)
{
  server_.Enqueue(MakeCanned(200, "{\"expires_in\":\"3600\",\"token_type\":\"Bearer\"}"));
  auto credential = MakeCredential(MakeVmEnvironment());

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::ProtocolError, e.GetCode());
  EXPECT_EQ(0u, message.find("ManagedIdentity credential (VirtualMachine): ")) << message;
  EXPECT_NE(std::string::npos, message.find("access_token")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ArcNetworkError)
{
  ManagedIdentityEnvironment environment;
  {
    LoopbackHttpServer closed;  // its port is free again once it is destroyed
    environment.identityEndpoint = closed.GetUrl(TOKEN_PATH);
    environment.imdsEndpoint = closed.GetUrl("");
    environment.podIdentityAuthorityHost = closed.GetUrl("");
  }
  auto credential = MakeCredential(environment);

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_EQ(0u, message.find("ManagedIdentity credential (AzureArc): ")) << message;
  EXPECT_NE(std::string::npos, message.find(environment.identityEndpoint)) << message;
}


TEST_F(ManagedIdentityCredentialTest, VmNetworkError)
{
  ManagedIdentityEnvironment environment;
  {
    LoopbackHttpServer closed;
    environment.podIdentityAuthorityHost = closed.GetUrl("");
  }
  auto credential = MakeCredential(environment);

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::NetworkError, e.GetCode());
  EXPECT_EQ(0u, message.find("ManagedIdentity credential (VirtualMachine): ")) << message;
}


TEST_F(ManagedIdentityCredentialTest, SelectsArc)
{
  // With all three variables set, IMDS_ENDPOINT selects Azure Arc.
  ManagedIdentityEnvironment environment = MakeArcEnvironment();
  environment.identityHeader = IDENTITY_HEADER;

  auto credential = MakeCredential(environment);

  EXPECT_EQ("AzureArc", credential->GetSource());
  EXPECT_EQ(server_.GetUrl(TOKEN_PATH), credential->GetEndpoint());
  EXPECT_EQ("system-assigned", credential->GetPrincipal());
  EXPECT_EQ("ManagedIdentity", credential->GetType());
}


TEST_F(ManagedIdentityCredentialTest, SelectsAppService)
{
  auto credential = MakeCredential(MakeAppServiceEnvironment());

  EXPECT_EQ("AppService", credential->GetSource());
  EXPECT_EQ(server_.GetUrl(APP_SERVICE_PATH), credential->GetEndpoint());
}


TEST_F(ManagedIdentityCredentialTest, SelectsVmWithoutHeader)
{
  ManagedIdentityEnvironment environment = MakeVmEnvironment();
  environment.identityEndpoint = server_.GetUrl(APP_SERVICE_PATH);

  auto credential = MakeCredential(environment);

  EXPECT_EQ("VirtualMachine", credential->GetSource());
  EXPECT_EQ(server_.GetUrl(TOKEN_PATH), credential->GetEndpoint());
}


TEST_F(ManagedIdentityCredentialTest, PodIdentityHostSlash)
{
  ManagedIdentityEnvironment environment;
  environment.podIdentityAuthorityHost = server_.GetUrl("/");

  auto credential = MakeCredential(environment);

  EXPECT_EQ(server_.GetUrl(TOKEN_PATH), credential->GetEndpoint());
}


TEST_F(ManagedIdentityCredentialTest, VmDefaultEndpoint)
{
  // Construction sends nothing, and this credential never requests a token.
  auto credential = MakeCredential(ManagedIdentityEnvironment());

  EXPECT_EQ("VirtualMachine", credential->GetSource());
  EXPECT_EQ("http://169.254.169.254/metadata/identity/oauth2/token", credential->GetEndpoint());
}


TEST_F(ManagedIdentityCredentialTest, InvalidEndpointRejected)
{
  ManagedIdentityEnvironment environment = MakeAppServiceEnvironment();
  environment.identityEndpoint = "ftp://127.0.0.1/msi/token";

  const Exception e = ConstructionError(environment, "", SCOPE);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("IDENTITY_ENDPOINT")) << message;
}


TEST_F(ManagedIdentityCredentialTest, EmptyScopeRejected)
{
  const Exception e = ConstructionError(MakeVmEnvironment(), "", "");
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("Scope")) << message;
}


TEST_F(ManagedIdentityCredentialTest, ScopeWithoutDefault)
{
  server_.Enqueue(MakeCanned(200, VM_TOKEN_ANSWER));
  ManagedIdentityCredential credential("", RESOURCE, MakeVmEnvironment(), TlsSettings());

  credential.RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ(RESOURCE, GetQuery(requests[0]).at("resource"));
}


TEST_F(ManagedIdentityCredentialTest, ReadsEnvironment)
{
  ScopedVariable endpoint("IDENTITY_ENDPOINT",
                          "http://127.0.0.1:40342/metadata/identity/oauth2/token");
  ScopedVariable header("IDENTITY_HEADER", IDENTITY_HEADER);
  ScopedVariable imds("IMDS_ENDPOINT", "http://127.0.0.1:40342");
  ScopedVariable pod("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:2579");

  const ManagedIdentityEnvironment environment = ReadManagedIdentityEnvironment();

  EXPECT_EQ("http://127.0.0.1:40342/metadata/identity/oauth2/token", environment.identityEndpoint);
  EXPECT_EQ(IDENTITY_HEADER, environment.identityHeader);
  EXPECT_EQ("http://127.0.0.1:40342", environment.imdsEndpoint);
  EXPECT_EQ("http://127.0.0.1:2579", environment.podIdentityAuthorityHost);
}
