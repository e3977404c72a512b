#include "Azure/WorkloadIdentityCredential.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace AzureDicom;
using namespace AzureDicom::Testing;

namespace
{
const char TENANT_ID[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const char CLIENT_ID[] = "5c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f";
const char SCOPE[] = "https://dicom.healthcareapis.azure.com/.default";
const char ASSERTION_TYPE[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const char FIRST_ASSERTION[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.Zmlyc3Q";
const char SECOND_ASSERTION[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2Vjb25k";
const int64_t MS_PER_SECOND = 1000;

const char TOKEN_ANSWER[] =
    "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,"
    "\"access_token\":\"eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ3b3JrbG9hZCJ9.c2ln\"}";

// The variables that the credential reads when an argument is empty.
const char* const VARIABLES[] = {"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE",
                                 "AZURE_AUTHORITY_HOST"};


CannedResponse MakeCanned(int status, const std::string& body)
{
  CannedResponse canned;
  canned.status = status;
  canned.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  canned.body = body;
  return canned;
}


void WriteFile(const std::filesystem::path& path, const std::string& content)
{
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << content;
  ASSERT_TRUE(file.good()) << path;
}


// Sets or unsets an environment variable for the life of the object and then restores it.
class ScopedVariable
{
public:
  ScopedVariable(const char* name, const char* value) : name_(name)
  {
    const char* previous = getenv(name);
    hadValue_ = previous != nullptr;
    previous_ = hadValue_ ? previous : "";
    if (value == nullptr)
    {
      unsetenv(name);
    }
    else
    {
      setenv(name, value, 1);
    }
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


class WorkloadIdentityCredentialTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    // The environment of the machine that runs the tests must not fill in an empty argument.
    for (const char* name : VARIABLES)
    {
      cleared_.push_back(std::make_unique<ScopedVariable>(name, nullptr));
    }

    std::string pattern =
        (std::filesystem::temp_directory_path() / "workload-identity-test-XXXXXX").string();
    ASSERT_NE(nullptr, mkdtemp(&pattern[0]));
    folder_ = pattern;
    tokenFile_ = folder_ / "azure-identity-token";
  }

  void TearDown() override
  {
    std::error_code ignored;
    std::filesystem::remove_all(folder_, ignored);
  }

  std::unique_ptr<WorkloadIdentityCredential> MakeCredential()
  {
    return std::make_unique<WorkloadIdentityCredential>(server_.GetUrl("/"), TENANT_ID, CLIENT_ID,
                                                        tokenFile_.string(), SCOPE, TlsSettings());
  }

  std::string GetTokenPath() const
  {
    return std::string("/") + TENANT_ID + "/oauth2/v2.0/token";
  }

  static Exception RequestTokenError(WorkloadIdentityCredential& credential)
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

  static Exception ConstructionError(const std::string& authorityHost, const std::string& tenantId,
                                     const std::string& clientId, const std::string& tokenFile)
  {
    try
    {
      WorkloadIdentityCredential credential(authorityHost, tenantId, clientId, tokenFile, SCOPE,
                                            TlsSettings());
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  std::vector<std::unique_ptr<ScopedVariable>> cleared_;
  LoopbackHttpServer server_;
  std::filesystem::path folder_;
  std::filesystem::path tokenFile_;
};
}  // namespace


TEST_F(WorkloadIdentityCredentialTest, SendsAssertion)
{
  WriteFile(tokenFile_, std::string(FIRST_ASSERTION) + "\n");
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));

  MakeCredential()->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ(GetTokenPath(), requests[0].target);
  EXPECT_EQ("application/x-www-form-urlencoded", requests[0].GetHeader("content-type"));

  const auto fields = ParseFormBody(requests[0].body);
  EXPECT_EQ(5u, fields.size());
  EXPECT_EQ("client_credentials", fields.at("grant_type"));
  EXPECT_EQ(CLIENT_ID, fields.at("client_id"));
  EXPECT_EQ(SCOPE, fields.at("scope"));
  EXPECT_EQ(ASSERTION_TYPE, fields.at("client_assertion_type"));
  EXPECT_EQ(FIRST_ASSERTION, fields.at("client_assertion"));
}


TEST_F(WorkloadIdentityCredentialTest, ParsesToken)
{
  WriteFile(tokenFile_, FIRST_ASSERTION);
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));

  const int64_t before = NowMs();
  const AccessToken token = MakeCredential()->RequestToken();
  const int64_t after = NowMs();

  EXPECT_EQ("eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ3b3JrbG9hZCJ9.c2ln", token.value);
  EXPECT_GE(token.expiresOn, before + 3599 * MS_PER_SECOND);
  EXPECT_LE(token.expiresOn, after + 3599 * MS_PER_SECOND);
}


TEST_F(WorkloadIdentityCredentialTest, RereadsTokenFile)
{
  WriteFile(tokenFile_, FIRST_ASSERTION);
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  auto credential = MakeCredential();

  credential->RequestToken();
  WriteFile(tokenFile_, SECOND_ASSERTION);
  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ(FIRST_ASSERTION, ParseFormBody(requests[0].body).at("client_assertion"));
  EXPECT_EQ(SECOND_ASSERTION, ParseFormBody(requests[1].body).at("client_assertion"));
}


TEST_F(WorkloadIdentityCredentialTest, RotatedSymlink)
{
  // Kubernetes rotates a projected token by pointing a symbolic link at a new folder.
  const std::filesystem::path first = folder_ / "first";
  const std::filesystem::path second = folder_ / "second";
  std::filesystem::create_directory(first);
  std::filesystem::create_directory(second);
  WriteFile(first / "token", FIRST_ASSERTION);
  WriteFile(second / "token", SECOND_ASSERTION);
  std::filesystem::create_symlink(first / "token", tokenFile_);
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  auto credential = MakeCredential();

  credential->RequestToken();
  std::filesystem::remove(tokenFile_);
  std::filesystem::create_symlink(second / "token", tokenFile_);
  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  EXPECT_EQ(FIRST_ASSERTION, ParseFormBody(requests[0].body).at("client_assertion"));
  EXPECT_EQ(SECOND_ASSERTION, ParseFormBody(requests[1].body).at("client_assertion"));
}


TEST_F(WorkloadIdentityCredentialTest, MissingTokenFile)
{
  auto credential = MakeCredential();

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("WorkloadIdentity credential: ")) << message;
  EXPECT_NE(std::string::npos, message.find(tokenFile_.string())) << message;
  EXPECT_NE(std::string::npos, message.find("cannot be opened")) << message;
  EXPECT_TRUE(server_.GetRequests().empty());
}


TEST_F(WorkloadIdentityCredentialTest, EmptyTokenFile)
{
  WriteFile(tokenFile_, " \n");
  auto credential = MakeCredential();

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_NE(std::string::npos, message.find(tokenFile_.string())) << message;
  EXPECT_NE(std::string::npos, message.find("is empty")) << message;
  EXPECT_TRUE(server_.GetRequests().empty());
}


TEST_F(WorkloadIdentityCredentialTest, TokenFileFolder)
{
  std::filesystem::create_directory(tokenFile_);
  auto credential = MakeCredential();

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_NE(std::string::npos, message.find(tokenFile_.string())) << message;
  EXPECT_TRUE(server_.GetRequests().empty());
}


TEST_F(WorkloadIdentityCredentialTest, AssertionRedacted)
{
  WriteFile(tokenFile_, FIRST_ASSERTION);
  server_.Enqueue(MakeCanned(
      400, std::string("{\"error\":\"invalid_client\",\"error_description\":\"AADSTS700211: No "
                       "matching federated identity record found for presented assertion ") +
               FIRST_ASSERTION + ".\",\"error_codes\":[700211]}"));
  auto credential = MakeCredential();

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("WorkloadIdentity credential: the token request to " +
                             server_.GetUrl(GetTokenPath()) +
                             " failed with HTTP 400: invalid_client: AADSTS700211"))
      << message;
  EXPECT_EQ(std::string::npos, message.find(FIRST_ASSERTION)) << message;
  EXPECT_NE(std::string::npos, message.find("[REDACTED]")) << message;
}


TEST_F(WorkloadIdentityCredentialTest, EnvironmentFallback)
{
  WriteFile(tokenFile_, FIRST_ASSERTION);
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  ScopedVariable tenant("AZURE_TENANT_ID", TENANT_ID);
  ScopedVariable client("AZURE_CLIENT_ID", CLIENT_ID);
  ScopedVariable file("AZURE_FEDERATED_TOKEN_FILE", tokenFile_.c_str());
  ScopedVariable authority("AZURE_AUTHORITY_HOST", server_.GetUrl("").c_str());

  WorkloadIdentityCredential credential("", "", "", "", SCOPE, TlsSettings());
  credential.RequestToken();

  EXPECT_EQ(TENANT_ID, credential.GetTenantId());
  EXPECT_EQ(CLIENT_ID, credential.GetPrincipal());
  EXPECT_EQ(tokenFile_.string(), credential.GetTokenFilePath());
  EXPECT_EQ(server_.GetUrl(GetTokenPath()), credential.GetTokenUrl());
  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ(GetTokenPath(), requests[0].target);
  EXPECT_EQ(CLIENT_ID, ParseFormBody(requests[0].body).at("client_id"));
}


TEST_F(WorkloadIdentityCredentialTest, ArgumentsOverEnvironment)
{
  ScopedVariable tenant("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000");
  ScopedVariable client("AZURE_CLIENT_ID", "11111111-1111-1111-1111-111111111111");
  ScopedVariable authority("AZURE_AUTHORITY_HOST", "https://login.example");

  auto credential = MakeCredential();

  EXPECT_EQ(TENANT_ID, credential->GetTenantId());
  EXPECT_EQ(CLIENT_ID, credential->GetPrincipal());
  EXPECT_EQ(server_.GetUrl(GetTokenPath()), credential->GetTokenUrl());
}


TEST_F(WorkloadIdentityCredentialTest, DefaultAuthorityHost)
{
  WorkloadIdentityCredential credential("", TENANT_ID, CLIENT_ID, tokenFile_.string(), SCOPE,
                                        TlsSettings());

  EXPECT_EQ(std::string("https://login.microsoftonline.com/") + TENANT_ID + "/oauth2/v2.0/token",
            credential.GetTokenUrl());
  EXPECT_EQ("WorkloadIdentity", credential.GetType());
}


TEST_F(WorkloadIdentityCredentialTest, MissingTenantId)
{
  const Exception e = ConstructionError(server_.GetUrl(""), "", CLIENT_ID, tokenFile_.string());
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("tenant ID is missing")) << message;
  EXPECT_NE(std::string::npos, message.find("AZURE_TENANT_ID")) << message;
}


TEST_F(WorkloadIdentityCredentialTest, MissingClientId)
{
  const Exception e = ConstructionError(server_.GetUrl(""), TENANT_ID, "", tokenFile_.string());
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("client ID is missing")) << message;
  EXPECT_NE(std::string::npos, message.find("AZURE_CLIENT_ID")) << message;
}


TEST_F(WorkloadIdentityCredentialTest, MissingTokenFilePath)
{
  const Exception e = ConstructionError(server_.GetUrl(""), TENANT_ID, CLIENT_ID, "");
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("federated token file is missing")) << message;
  EXPECT_NE(std::string::npos, message.find("AZURE_FEDERATED_TOKEN_FILE")) << message;
}


TEST_F(WorkloadIdentityCredentialTest, PlainHttpRejected)
{
  // Construction only: nothing is sent to this host.
  const Exception e =
      ConstructionError("http://login.example", TENANT_ID, CLIENT_ID, tokenFile_.string());
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
  EXPECT_NE(std::string::npos, message.find("plain http://")) << message;
}
