#include "Azure/CredentialManager.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>

#include <json/json.h>

#include <cstdlib>

using namespace AzureDicom;
using AzureDicom::Testing::CannedResponse;
using AzureDicom::Testing::LoopbackHttpServer;

namespace
{
const char* const OLD_SECRET = "old-secret-value-1";
const char* const NEW_SECRET = "new-secret-value-2";
const char* const CLIENT_ID = "11111111-2222-3333-4444-555555555555";
const char* const VERSION_1 = "0123456789abcdef0123456789abcdef";
const char* const VERSION_2 = "fedcba9876543210fedcba9876543210";

CannedResponse MakeJson(int status, const std::string& body)
{
  CannedResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "application/json");
  response.body = body;
  return response;
}


CannedResponse MakeManagedIdentityToken()
{
  return MakeJson(200, "{\"access_token\": \"vault-token\", \"expires_in\": \"3600\", "
                       "\"token_type\": \"Bearer\"}");
}


CannedResponse MakeVaultSecret(const LoopbackHttpServer& server, const std::string& value,
                               const std::string& version)
{
  return MakeJson(200, "{\"value\": \"" + value + "\", \"id\": \"" +
                           server.GetUrl("/secrets/dicom-secret/" + version) +
                           "\", \"attributes\": {\"enabled\": true}}");
}


CannedResponse MakeEntraToken()
{
  return MakeJson(200, "{\"access_token\": \"dicom-token\", \"expires_in\": 3600, "
                       "\"token_type\": \"Bearer\"}");
}


CannedResponse MakeInvalidSecret()
{
  return MakeJson(401, "{\"error\": \"invalid_client\", \"error_description\": "
                       "\"AADSTS7000215: Invalid client secret provided.\", "
                       "\"error_codes\": [7000215]}");
}


class CredentialManagerTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    // The vault's managed identity requests its token from the loopback server, never from the
    // metadata address.
    setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", server_.GetUrl("").c_str(), 1);
    unsetenv("IDENTITY_ENDPOINT");
    unsetenv("IMDS_ENDPOINT");
    unsetenv("IDENTITY_HEADER");
  }

  void TearDown() override
  {
    unsetenv("AZURE_POD_IDENTITY_AUTHORITY_HOST");
  }

  CredentialSettings MakeSettings(const std::string& pinnedVersion)
  {
    const std::string base = server_.GetUrl("");
    CredentialSettings settings;
    settings.type = CredentialType::ClientSecret;
    settings.tenantId = "contoso.example";
    settings.clientId = CLIENT_ID;
    settings.authorityHost = base.substr(0, base.size() - (base.back() == '/' ? 1 : 0));

    auto vault = std::make_shared<KeyVaultSettings>();
    vault->vaultUrl = settings.authorityHost;
    vault->secretName = "dicom-secret";
    vault->secretVersion = pinnedVersion;
    vault->credentials = std::make_shared<CredentialSettings>();
    vault->credentials->type = CredentialType::ManagedIdentity;
    vault->credentials->scope = "https://vault.azure.net/.default";
    settings.keyVault = vault;
    return settings;
  }

  LoopbackHttpServer server_;
  TlsSettings tls_;
};
}  // namespace


TEST_F(CredentialManagerTest, RotatedSecretIsReread)
{
  server_.Enqueue(MakeManagedIdentityToken());
  server_.Enqueue(MakeVaultSecret(server_, OLD_SECRET, VERSION_1));
  server_.Enqueue(MakeInvalidSecret());
  server_.Enqueue(MakeVaultSecret(server_, NEW_SECRET, VERSION_2));
  server_.Enqueue(MakeEntraToken());

  CredentialManager manager(MakeSettings(""), tls_);
  EXPECT_EQ("dicom-token", manager.GetTokens()->GetToken(NowMs()));

  const auto requests = server_.GetRequests();
  ASSERT_EQ(5u, requests.size());
  EXPECT_NE(std::string::npos, requests[2].body.find(OLD_SECRET));
  EXPECT_EQ(0u, requests[3].target.find("/secrets/dicom-secret"));
  EXPECT_NE(std::string::npos, requests[4].body.find(NEW_SECRET));

  const Json::Value status = manager.GetStatus();
  EXPECT_EQ(VERSION_2, status["KeyVault"]["VersionInUse"].asString());
  EXPECT_EQ("ClientSecret", status["Type"].asString());
  EXPECT_EQ(CLIENT_ID, status["Principal"].asString());

  const std::string text = status.toStyledString();
  EXPECT_EQ(std::string::npos, text.find(OLD_SECRET));
  EXPECT_EQ(std::string::npos, text.find(NEW_SECRET));
  EXPECT_EQ(std::string::npos, text.find("dicom-token"));
  EXPECT_EQ(std::string::npos, text.find("vault-token"));
}


TEST_F(CredentialManagerTest, PinnedVersionIsNotReplaced)
{
  server_.Enqueue(MakeManagedIdentityToken());
  server_.Enqueue(MakeVaultSecret(server_, OLD_SECRET, VERSION_1));
  server_.Enqueue(MakeInvalidSecret());
  server_.Enqueue(MakeVaultSecret(server_, OLD_SECRET, VERSION_1));

  CredentialManager manager(MakeSettings(VERSION_1), tls_);
  try
  {
    manager.GetTokens()->GetToken(NowMs());
    FAIL() << "a rejected pinned secret must not give a token";
  }
  catch (const Exception& e)
  {
    EXPECT_NE(std::string::npos, std::string(e.what()).find("AADSTS7000215")) << e.what();
    EXPECT_NE(std::string::npos, std::string(e.what()).find("no other version")) << e.what();
    EXPECT_EQ(std::string::npos, std::string(e.what()).find(OLD_SECRET));
  }

  const auto requests = server_.GetRequests();
  ASSERT_EQ(4u, requests.size());
  EXPECT_NE(std::string::npos, requests[1].target.find(VERSION_1));
  EXPECT_NE(std::string::npos, requests[3].target.find(VERSION_1));
  EXPECT_EQ(VERSION_1, manager.GetStatus()["KeyVault"]["VersionInUse"].asString());
  EXPECT_NE("", manager.GetStatus()["LastError"].asString());
}


TEST_F(CredentialManagerTest, RefreshRereadsAndRequests)
{
  server_.Enqueue(MakeManagedIdentityToken());
  server_.Enqueue(MakeVaultSecret(server_, OLD_SECRET, VERSION_1));
  server_.Enqueue(MakeEntraToken());
  server_.Enqueue(MakeManagedIdentityToken());
  server_.Enqueue(MakeVaultSecret(server_, NEW_SECRET, VERSION_2));
  server_.Enqueue(MakeEntraToken());

  CredentialManager manager(MakeSettings(""), tls_);
  manager.GetTokens()->GetToken(NowMs());
  manager.Refresh(NowMs());

  const auto requests = server_.GetRequests();
  ASSERT_EQ(6u, requests.size());
  EXPECT_NE(std::string::npos, requests[5].body.find(NEW_SECRET));
  EXPECT_EQ(VERSION_2, manager.GetStatus()["KeyVault"]["VersionInUse"].asString());
}


TEST_F(CredentialManagerTest, NoneHasNoTokens)
{
  CredentialSettings settings;
  CredentialManager manager(settings, tls_);
  EXPECT_EQ(nullptr, manager.GetTokens());
  EXPECT_EQ("None", manager.GetStatus()["Type"].asString());
  EXPECT_TRUE(manager.GetStatus()["KeyVault"].isNull());
  EXPECT_TRUE(server_.GetRequests().empty());
}
