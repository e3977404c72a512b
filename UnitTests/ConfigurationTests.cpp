#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/Configuration.h"

#include "TestSupport.h"

#include <gtest/gtest.h>
#include <json/reader.h>
#include <json/writer.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace AzureDicom;
using AzureDicom::Testing::ParseJson;
using AzureDicom::Testing::ToText;


namespace
{
const char* const kServiceUrl = "https://example-dicom.dicom.azurehealthcareapis.com";
const char* const kTenantId = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const char* const kClientId = "11111111-2222-3333-4444-555555555555";
const char* const kSecret = "s3cr3t-Value-42";
const char* const kPemCertificate =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXz\n-----END CERTIFICATE-----\n";


// A section with a valid ServiceUrl and the members of extraMembers ("\"Workers\": 8").
Json::Value MakeSection(const std::string& extraMembers = "")
{
  const std::string separator = extraMembers.empty() ? "" : ", ";
  return ParseJson(std::string("{\"ServiceUrl\": \"") + kServiceUrl + "\"" + separator +
                   extraMembers + "}");
}


// A section whose Credentials object has the members of credentialMembers.
Json::Value MakeCredentialSection(const std::string& credentialMembers)
{
  return MakeSection("\"Credentials\": {" + credentialMembers + "}");
}


std::string ClientSecretMembers(const std::string& secret = kSecret)
{
  return std::string("\"Type\": \"ClientSecret\", \"TenantId\": \"") + kTenantId +
         "\", \"ClientId\": \"" + kClientId + "\", \"ClientSecret\": \"" + secret + "\"";
}


// Credentials of Type ClientSecret whose secret is in Key Vault, with keyVaultMembers added to
// the KeyVault object.
Json::Value MakeKeyVaultSection(const std::string& keyVaultMembers = "")
{
  const std::string separator = keyVaultMembers.empty() ? "" : ", ";
  return MakeCredentialSection(
      std::string("\"Type\": \"ClientSecret\", \"TenantId\": \"") + kTenantId +
      "\", \"ClientId\": \"" + kClientId +
      "\", \"KeyVault\": {\"VaultUrl\": \"https://myvault.vault.azure.net\""
      ", \"SecretName\": \"orthanc-dicom-client-secret\"" +
      separator + keyVaultMembers + "}");
}


// Returns the message of the BadConfiguration error that parsing raises, or "" if it parses.
std::string GetParseError(const Json::Value& section)
{
  try
  {
    ParseConfiguration(section);
    return "";
  }
  catch (const Exception& error)
  {
    if (error.GetCode() != ErrorCode::BadConfiguration)
    {
      return std::string("wrong error code: ") + error.what();
    }
    return error.what();
  }
}


::testing::AssertionResult Contains(const std::string& text, const std::string& part)
{
  if (text.find(part) != std::string::npos)
  {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}


void SetPath(Json::Value& section, const std::vector<std::string>& path, const Json::Value& value)
{
  Json::Value* node = &section;
  for (const std::string& key : path)
  {
    node = &(*node)[key];
  }
  *node = value;
}


std::string JoinPath(const std::vector<std::string>& path)
{
  std::string joined = "AzureDicom";
  for (const std::string& key : path)
  {
    joined += "." + key;
  }
  return joined;
}


class ConfigurationTest : public ::testing::Test
{
 protected:
  void SetUp() override
  {
    std::string pattern = (std::filesystem::temp_directory_path() / "azure-dicom-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;
  }

  void TearDown() override
  {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  std::string WriteFile(const std::string& name, const std::string& content)
  {
    const std::string path = (directory_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  std::filesystem::path directory_;
};
}  // namespace


TEST(ClockTest, ZeroIsEmpty)
{
  EXPECT_EQ(FormatIsoTime(0), "");
}


TEST(ClockTest, FormatsUtcWithMilliseconds)
{
  EXPECT_EQ(FormatIsoTime(1796292930250), "2026-12-03T10:15:30.250Z");
}


TEST(ClockTest, PadsMilliseconds)
{
  EXPECT_EQ(FormatIsoTime(1796292930005), "2026-12-03T10:15:30.005Z");
  EXPECT_EQ(FormatIsoTime(1), "1970-01-01T00:00:00.001Z");
}


TEST(ClockTest, BeforeEpoch)
{
  EXPECT_EQ(FormatIsoTime(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatIsoTime(-1000), "1969-12-31T23:59:59.000Z");
}


TEST_F(ConfigurationTest, NullSectionDisables)
{
  const Configuration configuration = ParseConfiguration(Json::Value());

  EXPECT_FALSE(configuration.enable);
  EXPECT_EQ(configuration.leaseSeconds, 360u);
}


TEST_F(ConfigurationTest, NonObjectSectionRejected)
{
  for (const char* text : {"[1]", "\"AzureDicom\"", "5", "true"})
  {
    const std::string message = GetParseError(ParseJson(text));
    EXPECT_TRUE(Contains(message, "AzureDicom: invalid value")) << text;
    EXPECT_TRUE(Contains(message, "expected an object with the keys Enable, ServiceUrl")) << text;
  }
}


TEST_F(ConfigurationTest, DefaultsFilledIn)
{
  const Configuration configuration = ParseConfiguration(MakeSection());

  EXPECT_TRUE(configuration.enable);
  EXPECT_EQ(configuration.serviceUrl, kServiceUrl);
  EXPECT_EQ(configuration.apiVersion, "v2");
  EXPECT_EQ(configuration.partition, "");
  EXPECT_EQ(configuration.database, "");
  EXPECT_EQ(configuration.workers, 4u);
  EXPECT_EQ(configuration.maxInstancesPerRequest, 20u);
  EXPECT_EQ(configuration.maxRequestSizeMB, 64u);
  EXPECT_EQ(configuration.GetMaxRequestBytes(), 64u * 1024 * 1024);
  EXPECT_EQ(configuration.requestTimeoutSeconds, 300u);
  EXPECT_EQ(configuration.leaseSeconds, 360u);
  EXPECT_DOUBLE_EQ(configuration.retry.initialDelaySeconds, 2);
  EXPECT_DOUBLE_EQ(configuration.retry.maxDelaySeconds, 600);
  EXPECT_EQ(configuration.retry.maxAttempts, 10u);
  EXPECT_TRUE(configuration.tls.verifyPeer);
  EXPECT_EQ(configuration.tls.caCertificates, "");
  EXPECT_FALSE(configuration.mirrorDeletes);
  EXPECT_EQ(configuration.onConflict, ConflictPolicy::Keep);
  EXPECT_EQ(configuration.credentials.type, CredentialType::None);
  EXPECT_EQ(configuration.credentials.keyVault, nullptr);
}


TEST_F(ConfigurationTest, ExplicitValuesKept)
{
  const Configuration configuration = ParseConfiguration(MakeSection(
      R"("Workers": 8, "MaxInstancesPerRequest": 50, "MaxRequestSizeMB": 128,
       "RequestTimeoutSeconds": 120, "Database": "/var/lib/orthanc/mirror.db",
       "Retry": {"InitialDelaySeconds": 0.5, "MaxDelaySeconds": 30, "MaxAttempts": 3},
       "Tls": {"VerifyPeer": false, "AllowUnverifiedRemoteHosts": true},
       "MirrorDeletes": true, "OnConflict": "Replace")"));

  EXPECT_EQ(configuration.workers, 8u);
  EXPECT_EQ(configuration.maxInstancesPerRequest, 50u);
  EXPECT_EQ(configuration.maxRequestSizeMB, 128u);
  EXPECT_EQ(configuration.requestTimeoutSeconds, 120u);
  EXPECT_EQ(configuration.leaseSeconds, 180u);
  EXPECT_EQ(configuration.database, "/var/lib/orthanc/mirror.db");
  EXPECT_DOUBLE_EQ(configuration.retry.initialDelaySeconds, 0.5);
  EXPECT_DOUBLE_EQ(configuration.retry.maxDelaySeconds, 30);
  EXPECT_EQ(configuration.retry.maxAttempts, 3u);
  EXPECT_FALSE(configuration.tls.verifyPeer);
  EXPECT_TRUE(configuration.mirrorDeletes);
  EXPECT_EQ(configuration.onConflict, ConflictPolicy::Replace);
}


TEST_F(ConfigurationTest, DisabledSkipsRequiredKeys)
{
  const Configuration configuration = ParseConfiguration(ParseJson(R"({"Enable": false})"));

  EXPECT_FALSE(configuration.enable);
  EXPECT_EQ(configuration.serviceUrl, "");
}


TEST_F(ConfigurationTest, DisabledSkipsValueChecks)
{
  const Json::Value section = ParseJson(
      R"({"Enable": false, "ServiceUrl": "http://example.com", "Workers": 0,
        "Credentials": {"Type": "ClientSecret"}})");

  EXPECT_EQ(GetParseError(section), "");
}


TEST_F(ConfigurationTest, DisabledStillChecksTypes)
{
  const std::string wrongWorkers =
      GetParseError(ParseJson(R"({"Enable": false, "Workers": "many"})"));
  EXPECT_TRUE(Contains(wrongWorkers, "AzureDicom.Workers: invalid value \"many\""));

  const std::string wrongAttempts =
      GetParseError(ParseJson(R"({"Enable": false, "Retry": {"MaxAttempts": true}})"));
  EXPECT_TRUE(Contains(wrongAttempts, "AzureDicom.Retry.MaxAttempts: invalid value true"));

  const std::string wrongVault = GetParseError(
      ParseJson(R"({"Enable": false, "Credentials": {"KeyVault": {"RefreshSeconds": [60]}}})"));
  EXPECT_TRUE(Contains(wrongVault, "AzureDicom.Credentials.KeyVault.RefreshSeconds"));
}


TEST_F(ConfigurationTest, DisabledStillRejectsUnknownKeys)
{
  const std::string message = GetParseError(ParseJson(R"({"Enable": false, "Workerz": 4})"));

  EXPECT_TRUE(Contains(message, "AzureDicom.Workerz: unknown key"));
}


TEST_F(ConfigurationTest, EnableAsString)
{
  EXPECT_FALSE(ParseConfiguration(ParseJson(R"({"Enable": "false"})")).enable);
  EXPECT_TRUE(ParseConfiguration(MakeSection(R"("Enable": "true")")).enable);
  EXPECT_TRUE(Contains(GetParseError(ParseJson(R"({"Enable": "true"})")),
                       "AzureDicom.ServiceUrl: missing"));
  EXPECT_TRUE(
      Contains(GetParseError(ParseJson(R"({"Enable": "yes"})")),
               "AzureDicom.Enable: invalid value \"yes\" (a string); expected true or false"));
}


TEST_F(ConfigurationTest, UnknownTopLevelKey)
{
  const std::string message = GetParseError(MakeSection(R"("Workerz": 4)"));

  EXPECT_TRUE(Contains(message, "AzureDicom.Workerz: unknown key"));
  EXPECT_TRUE(Contains(message, "expected one of Enable, ServiceUrl, ApiVersion"));
  EXPECT_TRUE(Contains(message, "OnConflict, Credentials"));
}


TEST_F(ConfigurationTest, KeysAreCaseSensitive)
{
  const std::string message = GetParseError(MakeSection(R"("workers": 4)"));

  EXPECT_TRUE(Contains(message, "AzureDicom.workers: unknown key"));
  EXPECT_TRUE(Contains(message, "case-sensitive: Workers"));
}


TEST_F(ConfigurationTest, UnknownKeyAtEachLevel)
{
  struct Case
  {
    Json::Value section;
    std::string key;
    std::string allowed;
  };
  const std::vector<Case> cases = {
      {MakeSection(R"("Retry": {"MaxAtempts": 3})"), "AzureDicom.Retry.MaxAtempts",
       "InitialDelaySeconds, MaxDelaySeconds, MaxAttempts"},
      {MakeSection(R"("Tls": {"Verify": true})"), "AzureDicom.Tls.Verify",
       "VerifyPeer, CaCertificates, AllowUnverifiedRemoteHosts"},
      {MakeCredentialSection(R"("Type": "None", "Secret": "x")"), "AzureDicom.Credentials.Secret",
       "Type, TenantId, ClientId, ClientSecret, CertificatePath"},
      {MakeKeyVaultSection(R"("Name": "x")"), "AzureDicom.Credentials.KeyVault.Name",
       "VaultUrl, SecretName, SecretVersion, RefreshSeconds, Credentials"},
      {MakeKeyVaultSection(R"("Credentials": {"Type": "ManagedIdentity", "Tenant": "x"})"),
       "AzureDicom.Credentials.KeyVault.Credentials.Tenant", "Type, TenantId, ClientId"},
  };

  for (const Case& c : cases)
  {
    const std::string message = GetParseError(c.section);
    EXPECT_TRUE(Contains(message, c.key + ": unknown key"));
    EXPECT_TRUE(Contains(message, "expected one of " + c.allowed));
  }
}


TEST_F(ConfigurationTest, WrongTypes)
{
  struct Case
  {
    std::string members;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"("Workers": true)",
       "AzureDicom.Workers: invalid value true (a boolean); expected an integer from 1 to 64"},
      {R"("ApiVersion": 2)",
       "AzureDicom.ApiVersion: invalid value 2 (a number); expected a string"},
      {R"("Retry": "fast")",
       "AzureDicom.Retry: invalid value \"fast\" (a string); expected an object"},
      {R"("Tls": [])", "AzureDicom.Tls: invalid value [] (an array); expected an object"},
      {R"("MirrorDeletes": 1)",
       "AzureDicom.MirrorDeletes: invalid value 1 (a number); expected true"},
      {R"("Credentials": "None")",
       "AzureDicom.Credentials: invalid value (a string, not shown because the key can contain "
       "a secret); expected an object"},
      {R"("Retry": {"InitialDelaySeconds": [1]})",
       "AzureDicom.Retry.InitialDelaySeconds: invalid value [1] (an array); expected a number"},
      {R"("Credentials": {"Type": 1})", "AzureDicom.Credentials.Type: invalid value 1 (a number)"},
  };

  for (const Case& c : cases)
  {
    EXPECT_TRUE(Contains(GetParseError(MakeSection(c.members)), c.message)) << c.members;
  }
}


TEST_F(ConfigurationTest, ServiceUrlWrongType)
{
  const std::string message = GetParseError(ParseJson(R"({"ServiceUrl": 5})"));

  EXPECT_TRUE(
      Contains(message, "AzureDicom.ServiceUrl: invalid value 5 (a number); expected a string"));
}


TEST_F(ConfigurationTest, NumbersAndBooleansAsStrings)
{
  const Configuration configuration = ParseConfiguration(MakeSection(
      R"("Workers": "8", "LeaseSeconds": "400", "MirrorDeletes": "true",
       "Retry": {"InitialDelaySeconds": "0.5", "MaxDelaySeconds": "1e2", "MaxAttempts": "3"},
       "Tls": {"VerifyPeer": "false", "AllowUnverifiedRemoteHosts": "true"})"));

  EXPECT_EQ(configuration.workers, 8u);
  EXPECT_EQ(configuration.leaseSeconds, 400u);
  EXPECT_TRUE(configuration.mirrorDeletes);
  EXPECT_DOUBLE_EQ(configuration.retry.initialDelaySeconds, 0.5);
  EXPECT_DOUBLE_EQ(configuration.retry.maxDelaySeconds, 100);
  EXPECT_EQ(configuration.retry.maxAttempts, 3u);
  EXPECT_FALSE(configuration.tls.verifyPeer);
}


TEST_F(ConfigurationTest, InvalidNumberStrings)
{
  for (const char* text : {"8x", "", " 8", "8 ", "+8", "0x10", "4.5", "1e1", "four"})
  {
    Json::Value section = MakeSection();
    section["Workers"] = text;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "AzureDicom.Workers: invalid value")) << text;
    EXPECT_TRUE(Contains(message, "expected an integer from 1 to 64")) << text;
  }

  for (const char* text : {"inf", "nan", "1e999", "0x1p3", "2s", ""})
  {
    Json::Value section = MakeSection();
    section["Retry"]["InitialDelaySeconds"] = text;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "AzureDicom.Retry.InitialDelaySeconds: invalid value")) << text;
  }
}


TEST_F(ConfigurationTest, IntegerFromJsonReal)
{
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("Workers": 4.0)")).workers, 4u);
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Workers": 4.5)")),
                       "AzureDicom.Workers: invalid value 4.5 (a number)"));
}


TEST_F(ConfigurationTest, IntegerRangeEdges)
{
  struct Case
  {
    std::vector<std::string> path;
    int64_t min;
    int64_t max;
  };
  const std::vector<Case> cases = {
      {{"Workers"}, 1, 64},
      {{"MaxInstancesPerRequest"}, 1, 1000},
      {{"MaxRequestSizeMB"}, 1, 2048},
      {{"RequestTimeoutSeconds"}, 1, 86400},
      {{"Retry", "MaxAttempts"}, 1, 1000},
      {{"Credentials", "KeyVault", "RefreshSeconds"}, 10, 604800},
  };

  for (const Case& c : cases)
  {
    const std::string key = JoinPath(c.path);
    const std::string expected =
        "expected an integer from " + std::to_string(c.min) + " to " + std::to_string(c.max);
    for (int64_t value : {c.min - 1, c.min, c.max, c.max + 1})
    {
      Json::Value section = MakeKeyVaultSection();
      SetPath(section, c.path, Json::Value(static_cast<Json::Int64>(value)));
      const std::string message = GetParseError(section);
      const bool isInRange = value >= c.min && value <= c.max;
      if (isInRange)
      {
        EXPECT_EQ(message, "") << key << " = " << value;
      }
      else
      {
        EXPECT_TRUE(Contains(message, key + ": " + std::to_string(value) + " is out of range"));
        EXPECT_TRUE(Contains(message, expected)) << key << " = " << value;
      }
    }
  }
}


TEST_F(ConfigurationTest, HugeIntegersOutOfRange)
{
  for (const char* members :
       {R"("Workers": 1e30)", R"("Workers": 18446744073709551615)",
        R"("Workers": "99999999999999999999")", R"("Workers": "-99999999999999999999")"})
  {
    EXPECT_TRUE(Contains(GetParseError(MakeSection(members)), "is out of range")) << members;
  }
}


TEST_F(ConfigurationTest, LeaseDefaultsToTimeoutPlusMargin)
{
  const Configuration configuration =
      ParseConfiguration(MakeSection(R"("RequestTimeoutSeconds": 100)"));

  EXPECT_EQ(configuration.leaseSeconds, 160u);
}


TEST_F(ConfigurationTest, LeaseMustExceedTimeout)
{
  const std::string equal =
      GetParseError(MakeSection(R"("RequestTimeoutSeconds": 100, "LeaseSeconds": 100)"));
  EXPECT_TRUE(Contains(equal, "AzureDicom.LeaseSeconds: 100 is out of range"));
  EXPECT_TRUE(Contains(equal,
                       "expected an integer from 101 to 604800, greater than "
                       "RequestTimeoutSeconds (100)"));

  EXPECT_EQ(ParseConfiguration(MakeSection(R"("RequestTimeoutSeconds": 100, "LeaseSeconds": 101)"))
                .leaseSeconds,
            101u);
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("LeaseSeconds": 604800)")).leaseSeconds, 604800u);
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("LeaseSeconds": 604801)")),
                       "AzureDicom.LeaseSeconds: 604801 is out of range"));
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("LeaseSeconds": 300)")),
                       "AzureDicom.LeaseSeconds: 300 is out of range"));
}


TEST_F(ConfigurationTest, RetryDelayRules)
{
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 0})")),
                       "AzureDicom.Retry.InitialDelaySeconds: 0 is out of range; expected a "
                       "number of seconds from 0.01 to 86400"));
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 1e-300})")),
                       "AzureDicom.Retry.InitialDelaySeconds: 1e-300 is out of range"));
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 0.009})")),
                       "AzureDicom.Retry.InitialDelaySeconds: 0.009 is out of range"));
  EXPECT_EQ(GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 0.01})")), "");
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": -1})")),
                       "AzureDicom.Retry.InitialDelaySeconds: -1 is out of range"));
  EXPECT_DOUBLE_EQ(ParseConfiguration(MakeSection(R"("Retry": {"InitialDelaySeconds": 0.1})"))
                       .retry.initialDelaySeconds,
                   0.1);

  const std::string defaultTooSmall =
      GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 700})"));
  EXPECT_TRUE(Contains(defaultTooSmall,
                       "AzureDicom.Retry.MaxDelaySeconds: 600 (the default) is "
                       "less than InitialDelaySeconds (700)"));

  EXPECT_TRUE(Contains(
      GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 2, "MaxDelaySeconds": 1})")),
      "AzureDicom.Retry.MaxDelaySeconds: 1 is less than InitialDelaySeconds (2)"));
  EXPECT_EQ(
      GetParseError(MakeSection(R"("Retry": {"InitialDelaySeconds": 5, "MaxDelaySeconds": 5})")),
      "");
  EXPECT_EQ(GetParseError(MakeSection(R"("Retry": {"MaxDelaySeconds": 86400})")), "");
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Retry": {"MaxDelaySeconds": 86401})")),
                       "AzureDicom.Retry.MaxDelaySeconds: 86401 is out of range"));
}


TEST_F(ConfigurationTest, ApiVersionValues)
{
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("ApiVersion": "v1")")).apiVersion, "v1");
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("ApiVersion": "v2")")).apiVersion, "v2");
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("ApiVersion": "")")).apiVersion, "");

  for (const char* members :
       {R"("ApiVersion": "v3")", R"("ApiVersion": "V2")", R"("ApiVersion": "2")"})
  {
    const std::string message = GetParseError(MakeSection(members));
    EXPECT_TRUE(Contains(message, "AzureDicom.ApiVersion: invalid value")) << members;
    EXPECT_TRUE(Contains(message, "expected \"v1\" or \"v2\"")) << members;
  }
}


TEST_F(ConfigurationTest, PartitionRules)
{
  Json::Value longest = MakeSection();
  longest["Partition"] = std::string(64, 'p');
  EXPECT_EQ(ParseConfiguration(longest).partition, std::string(64, 'p'));

  Json::Value tooLong = MakeSection();
  tooLong["Partition"] = std::string(65, 'p');
  EXPECT_TRUE(Contains(GetParseError(tooLong), "AzureDicom.Partition: invalid value"));

  EXPECT_EQ(ParseConfiguration(MakeSection(R"("Partition": "Site.A-1_x")")).partition,
            "Site.A-1_x");
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Partition": "a/b")")),
                       "AzureDicom.Partition: invalid value \"a/b\""));
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("Partition": "a b")")),
                       "AzureDicom.Partition: invalid value \"a b\""));

  const std::string noVersion =
      GetParseError(MakeSection(R"("Partition": "site-a", "ApiVersion": "")"));
  EXPECT_TRUE(
      Contains(noVersion, "AzureDicom.Partition: \"site-a\" is set while ApiVersion is \"\""));
  EXPECT_TRUE(Contains(noVersion, "only the Azure DICOM service has partitions"));
}


TEST_F(ConfigurationTest, NodeNameRules)
{
  EXPECT_EQ(ParseConfiguration(MakeSection()).nodeName, "");
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("NodeName": "orthanc-2.site:8042")")).nodeName,
            "orthanc-2.site:8042");

  Json::Value longest = MakeSection();
  longest["NodeName"] = std::string(128, 'n');
  EXPECT_EQ(ParseConfiguration(longest).nodeName, std::string(128, 'n'));

  Json::Value tooLong = MakeSection();
  tooLong["NodeName"] = std::string(129, 'n');
  EXPECT_TRUE(Contains(GetParseError(tooLong), "AzureDicom.NodeName: invalid value"));

  const std::string space = GetParseError(MakeSection(R"("NodeName": "node a")"));
  EXPECT_TRUE(Contains(space, "AzureDicom.NodeName: invalid value \"node a\""));
  EXPECT_TRUE(Contains(space, "<hostname>:<HttpPort>"));
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("NodeName": 3)")), "AzureDicom.NodeName"));

  const Json::Value json = ToRedactedJson(
      ParseConfiguration(MakeSection(R"("NodeName": "n1", "Database": "host=db password=x")")));
  EXPECT_EQ(json["NodeName"].asString(), "n1");
  EXPECT_EQ(json["Database"].asString(), "host=db password=<redacted>");
}


TEST_F(ConfigurationTest, ServiceUrlRequired)
{
  const std::string message = GetParseError(ParseJson("{}"));

  EXPECT_TRUE(Contains(message, "AzureDicom.ServiceUrl: missing; expected the base URL"));
  EXPECT_TRUE(Contains(GetParseError(ParseJson(R"({"ServiceUrl": ""})")),
                       "AzureDicom.ServiceUrl: missing"));
}


TEST_F(ConfigurationTest, ServiceUrlTrailingSlashes)
{
  EXPECT_EQ(ParseConfiguration(ParseJson(R"({"ServiceUrl": "https://host.example/"})")).serviceUrl,
            "https://host.example");
  EXPECT_EQ(
      ParseConfiguration(ParseJson(R"({"ServiceUrl": "https://host.example/base//"})")).serviceUrl,
      "https://host.example/base");
}


TEST_F(ConfigurationTest, PlainHttpOnlyForLoopback)
{
  for (const char* url : {"http://localhost:8042", "http://LOCALHOST", "http://127.0.0.1",
                          "http://127.10.20.30:8042/dicom-web", "http://[::1]:8042"})
  {
    Json::Value section;
    section["ServiceUrl"] = url;
    EXPECT_EQ(GetParseError(section), "") << url;
  }

  for (const char* url :
       {"http://example.com", "http://10.0.0.1", "http://128.0.0.1", "http://localhost.example.com",
        "http://127.0.0.1.example.com", "http://[::2]", "HTTP://example.com"})
  {
    Json::Value section;
    section["ServiceUrl"] = url;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "uses plain http:// with a host that is not loopback")) << url;
    EXPECT_TRUE(Contains(message, "expected an https:// URL")) << url;
  }
}


TEST_F(ConfigurationTest, HttpsForAnyHost)
{
  for (const char* url :
       {"https://example.com", "https://10.0.0.1:8443", "https://[2001:db8::1]/dicom"})
  {
    Json::Value section;
    section["ServiceUrl"] = url;
    EXPECT_EQ(GetParseError(section), "") << url;
  }
}


TEST_F(ConfigurationTest, MalformedServiceUrls)
{
  struct Case
  {
    const char* url;
    const char* problem;
  };
  const std::vector<Case> cases = {
      {"ftp://host", "is not an http:// or https:// URL"},
      {"host.example", "is not an http:// or https:// URL"},
      {"https://", "has no host"},
      {"https://:443", "has no host"},
      {"https://host:0", "has an invalid port"},
      {"https://host:65536", "has an invalid port"},
      {"https://host:abc", "has an invalid port"},
      {"https://host:", "has an invalid port"},
      {"https://ho st", "contains a space or a control character"},
      {"https://host/a b", "contains a space or a control character"},
      {"https://ho!st", "has an invalid host name"},
      {"https://[::1", "has no closing ']'"},
      {"https://[not-ipv6]", "has an invalid IPv6 address"},
      {"https://[::1]x", "has text after its IPv6 address"},
      {"https://host?x=1", "contains a query or a fragment"},
      {"https://host/#top", "contains a query or a fragment"},
  };

  for (const Case& c : cases)
  {
    Json::Value section;
    section["ServiceUrl"] = c.url;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "AzureDicom.ServiceUrl: ")) << c.url;
    EXPECT_TRUE(Contains(message, c.problem)) << c.url;
  }
}


TEST_F(ConfigurationTest, ServiceUrlRejectsUserInfo)
{
  const std::string message =
      GetParseError(ParseJson(R"({"ServiceUrl": "https://user:hunter2@host.example/x"})"));

  EXPECT_TRUE(Contains(message,
                       "AzureDicom.ServiceUrl: \"https://<redacted>@host.example/x\" "
                       "contains a user name or password"));
  EXPECT_FALSE(Contains(message, "hunter2"));
}


TEST_F(ConfigurationTest, ServiceUrlQueryNotShown)
{
  const std::string message =
      GetParseError(ParseJson(R"({"ServiceUrl": "https://host.example/x?sig=T0ken"})"));

  EXPECT_TRUE(Contains(message, "contains a query or a fragment"));
  EXPECT_FALSE(Contains(message, "T0ken"));
}


TEST_F(ConfigurationTest, ServiceUrlWithStowPath)
{
  EXPECT_TRUE(
      Contains(GetParseError(ParseJson(R"({"ServiceUrl": "https://host.example/v2/studies"})")),
               "AzureDicom.ServiceUrl: \"https://host.example/v2/studies\" ends with /studies"));

  const std::string version =
      GetParseError(ParseJson(R"({"ServiceUrl": "https://host.example/v1/"})"));
  EXPECT_TRUE(Contains(version, "ends with the version segment /v1"));
  EXPECT_TRUE(Contains(version, "the plugin appends ApiVersion (\"v2\")"));

  EXPECT_EQ(
      GetParseError(ParseJson(R"({"ServiceUrl": "https://host.example/v1", "ApiVersion": ""})")),
      "");
  EXPECT_EQ(GetParseError(ParseJson(R"({"ServiceUrl": "https://host.example/vault"})")), "");
}


TEST_F(ConfigurationTest, StowUrlPerVersion)
{
  Configuration configuration = ParseConfiguration(MakeSection());
  EXPECT_EQ(configuration.GetDicomWebBase(), std::string(kServiceUrl) + "/v2");
  EXPECT_EQ(configuration.GetStowUrl(), std::string(kServiceUrl) + "/v2/studies");

  configuration = ParseConfiguration(MakeSection(R"("ApiVersion": "v1")"));
  EXPECT_EQ(configuration.GetStowUrl(), std::string(kServiceUrl) + "/v1/studies");

  configuration = ParseConfiguration(
      ParseJson(R"({"ServiceUrl": "http://localhost:8042/dicom-web/", "ApiVersion": ""})"));
  EXPECT_EQ(configuration.GetDicomWebBase(), "http://localhost:8042/dicom-web");
  EXPECT_EQ(configuration.GetStowUrl(), "http://localhost:8042/dicom-web/studies");
}


TEST_F(ConfigurationTest, StowUrlWithPartition)
{
  Configuration configuration = ParseConfiguration(MakeSection(R"("Partition": "site-a")"));
  EXPECT_EQ(configuration.GetDicomWebBase(), std::string(kServiceUrl) + "/v2/partitions/site-a");
  EXPECT_EQ(configuration.GetStowUrl(), std::string(kServiceUrl) + "/v2/partitions/site-a/studies");

  configuration = ParseConfiguration(MakeSection(R"("Partition": "site-a", "ApiVersion": "v1")"));
  EXPECT_EQ(configuration.GetStowUrl(), std::string(kServiceUrl) + "/v1/partitions/site-a/studies");
}


TEST_F(ConfigurationTest, GetUrlHostParts)
{
  EXPECT_EQ(GetUrlHost("https://host.example", "Key"), "host.example");
  EXPECT_EQ(GetUrlHost("https://host.example:8443/path?q=1", "Key"), "host.example");
  EXPECT_EQ(GetUrlHost("https://user:pw@host.example:8443/", "Key"), "host.example");
  EXPECT_EQ(GetUrlHost("https://a@b@host.example", "Key"), "host.example");
  EXPECT_EQ(GetUrlHost("http://[::1]:8042/x", "Key"), "::1");
  EXPECT_EQ(GetUrlHost("http://[2001:db8::1]", "Key"), "2001:db8::1");
  EXPECT_EQ(GetUrlHost("HTTPS://Host.Example", "Key"), "Host.Example");
  EXPECT_EQ(GetUrlHost("https://host.example/path@other", "Key"), "host.example");
}


TEST_F(ConfigurationTest, GetUrlHostErrors)
{
  for (const char* url : {"ftp://host", "https://", "https://host:99999", "no-scheme"})
  {
    try
    {
      GetUrlHost(url, "Orthanc.Setting");
      ADD_FAILURE() << url << " was accepted";
    }
    catch (const Exception& error)
    {
      EXPECT_EQ(error.GetCode(), ErrorCode::BadConfiguration) << url;
      EXPECT_TRUE(Contains(error.what(), "Orthanc.Setting: ")) << url;
    }
  }
}


TEST_F(ConfigurationTest, IsLoopbackHostValues)
{
  for (const char* host : {"localhost", "LocalHost", "127.0.0.1", "127.255.255.254", "127.0.1.1",
                           "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"})
  {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }

  for (const char* host :
       {"", "example.com", "localhost.example.com", "126.0.0.1", "128.0.0.1", "0.0.0.0",
        "::", "::2", "[::2]", "127.1", "127.0.0.01", "::ffff:10.0.0.1", "169.254.169.254"})
  {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}


TEST_F(ConfigurationTest, OnConflictValues)
{
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("OnConflict": "Keep")")).onConflict,
            ConflictPolicy::Keep);
  EXPECT_EQ(ParseConfiguration(MakeSection(R"("OnConflict": "Replace")")).onConflict,
            ConflictPolicy::Replace);
  EXPECT_TRUE(Contains(GetParseError(MakeSection(R"("OnConflict": "keep")")),
                       "AzureDicom.OnConflict: invalid value \"keep\"; expected \"Keep\" or "
                       "\"Replace\""));
}


TEST_F(ConfigurationTest, CaCertificatesFile)
{
  Json::Value section = MakeSection();
  section["Tls"]["CaCertificates"] = WriteFile("ca.pem", kPemCertificate);
  EXPECT_EQ(ParseConfiguration(section).tls.caCertificates, (directory_ / "ca.pem").string());

  section["Tls"]["CaCertificates"] = (directory_ / "missing.pem").string();
  EXPECT_TRUE(Contains(GetParseError(section), "AzureDicom.Tls.CaCertificates: file \""));
  EXPECT_TRUE(Contains(GetParseError(section), "missing.pem\" not found"));

  section["Tls"]["CaCertificates"] = directory_.string();
  EXPECT_TRUE(Contains(GetParseError(section), "is not a regular file"));

  section["Tls"]["CaCertificates"] = WriteFile("empty.pem", "not a certificate\n");
  EXPECT_TRUE(Contains(GetParseError(section), "contains no PEM certificate"));

  section["Tls"]["CaCertificates"] = "";
  EXPECT_EQ(GetParseError(section), "");
}


TEST_F(ConfigurationTest, CaCertificatesUnreadable)
{
  if (geteuid() == 0)
  {
    GTEST_SKIP() << "root can read a file without read permission";
  }

  const std::string path = WriteFile("locked.pem", kPemCertificate);
  ASSERT_EQ(chmod(path.c_str(), 0), 0);
  Json::Value section = MakeSection();
  section["Tls"]["CaCertificates"] = path;

  EXPECT_TRUE(Contains(GetParseError(section), "cannot be opened"));
}


TEST_F(ConfigurationTest, CredentialsAbsentIsNone)
{
  const Configuration configuration = ParseConfiguration(MakeSection(R"("Credentials": null)"));

  EXPECT_EQ(configuration.credentials.type, CredentialType::None);
}


TEST_F(ConfigurationTest, CredentialTypeRequired)
{
  const std::string message = GetParseError(MakeCredentialSection(""));

  EXPECT_TRUE(Contains(message,
                       "AzureDicom.Credentials.Type: missing; expected one of None, "
                       "ClientSecret, ClientCertificate, ManagedIdentity, "
                       "WorkloadIdentity"));
}


TEST_F(ConfigurationTest, CredentialTypeUnknown)
{
  EXPECT_TRUE(Contains(GetParseError(MakeCredentialSection(R"("Type": "Secret")")),
                       "AzureDicom.Credentials.Type: invalid value \"Secret\"; expected one of"));
  EXPECT_TRUE(Contains(GetParseError(MakeCredentialSection(R"("Type": "clientsecret")")),
                       "AzureDicom.Credentials.Type: invalid value \"clientsecret\""));
}


TEST_F(ConfigurationTest, ClientSecretComplete)
{
  const CredentialSettings credentials =
      ParseConfiguration(MakeCredentialSection(ClientSecretMembers())).credentials;

  EXPECT_EQ(credentials.type, CredentialType::ClientSecret);
  EXPECT_EQ(credentials.tenantId, kTenantId);
  EXPECT_EQ(credentials.clientId, kClientId);
  EXPECT_EQ(credentials.clientSecret, kSecret);
  EXPECT_EQ(credentials.authorityHost, "https://login.microsoftonline.com");
  EXPECT_EQ(credentials.scope, "https://dicom.healthcareapis.azure.com/.default");
  EXPECT_EQ(credentials.keyVault, nullptr);
}


TEST_F(ConfigurationTest, ClientSecretRequiredKeys)
{
  const std::string noTenant =
      GetParseError(MakeCredentialSection(std::string(R"("Type": "ClientSecret", "ClientId": ")") +
                                          kClientId + R"(", "ClientSecret": "x")"));
  EXPECT_TRUE(Contains(noTenant, "AzureDicom.Credentials.TenantId: missing"));
  EXPECT_TRUE(Contains(noTenant, "which Type ClientSecret requires"));

  const std::string noClient =
      GetParseError(MakeCredentialSection(std::string(R"("Type": "ClientSecret", "TenantId": ")") +
                                          kTenantId + R"(", "ClientSecret": "x")"));
  EXPECT_TRUE(Contains(noClient, "AzureDicom.Credentials.ClientId: missing"));

  const std::string noSecret =
      GetParseError(MakeCredentialSection(std::string(R"("Type": "ClientSecret", "TenantId": ")") +
                                          kTenantId + R"(", "ClientId": ")" + kClientId + "\""));
  EXPECT_TRUE(Contains(noSecret,
                       "AzureDicom.Credentials.ClientSecret: missing; expected either a "
                       "non-empty ClientSecret or a KeyVault object"));
}


TEST_F(ConfigurationTest, EmptySecretNamesEnvironment)
{
  // What Orthanc makes of "ClientSecret": "${AZURE_DICOM_CLIENT_SECRET}" when the variable is
  // not set.
  const std::string emptySecret = GetParseError(MakeCredentialSection(ClientSecretMembers("")));

  EXPECT_TRUE(Contains(emptySecret, "AzureDicom.Credentials.ClientSecret: empty")) << emptySecret;
  EXPECT_TRUE(Contains(emptySecret, "environment variable")) << emptySecret;
  EXPECT_TRUE(Contains(emptySecret, "expected either a non-empty ClientSecret")) << emptySecret;

  const std::string emptyTenant = GetParseError(MakeCredentialSection(
      std::string(R"("Type": "ClientSecret", "TenantId": "", "ClientId": ")") + kClientId +
      R"(", "ClientSecret": "x")"));
  EXPECT_TRUE(Contains(emptyTenant, "AzureDicom.Credentials.TenantId: empty")) << emptyTenant;
}


TEST_F(ConfigurationTest, ClientSecretFromKeyVault)
{
  const CredentialSettings credentials = ParseConfiguration(MakeKeyVaultSection()).credentials;

  EXPECT_EQ(credentials.type, CredentialType::ClientSecret);
  EXPECT_EQ(credentials.clientSecret, "");
  ASSERT_NE(credentials.keyVault, nullptr);
  EXPECT_EQ(credentials.keyVault->vaultUrl, "https://myvault.vault.azure.net");
  EXPECT_EQ(credentials.keyVault->secretName, "orthanc-dicom-client-secret");
  EXPECT_EQ(credentials.keyVault->secretVersion, "");
  EXPECT_EQ(credentials.keyVault->refreshSeconds, 3600u);
  ASSERT_NE(credentials.keyVault->credentials, nullptr);
  EXPECT_EQ(credentials.keyVault->credentials->type, CredentialType::ManagedIdentity);
  EXPECT_EQ(credentials.keyVault->credentials->scope, "https://vault.azure.net/.default");
}


TEST_F(ConfigurationTest, ClientSecretAndKeyVaultConflict)
{
  Json::Value section = MakeKeyVaultSection();
  section["Credentials"]["ClientSecret"] = kSecret;
  const std::string message = GetParseError(section);

  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.ClientSecret: set together with KeyVault"));
  EXPECT_FALSE(Contains(message, kSecret));
}


TEST_F(ConfigurationTest, ClientSecretRejectsCertificateKeys)
{
  const std::string message = GetParseError(
      MakeCredentialSection(ClientSecretMembers() + R"(, "CertificatePath": "/etc/cert.pem")"));
  EXPECT_TRUE(Contains(message,
                       "AzureDicom.Credentials.CertificatePath: not used by Type "
                       "ClientSecret"));

  EXPECT_EQ(GetParseError(MakeCredentialSection(
                ClientSecretMembers() + R"(, "CertificatePath": "", "CertificatePassword": "")")),
            "");
}


TEST_F(ConfigurationTest, TenantIdForms)
{
  for (const char* tenant :
       {"72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso.onmicrosoft.com", "organizations"})
  {
    Json::Value section = MakeCredentialSection(ClientSecretMembers());
    section["Credentials"]["TenantId"] = tenant;
    EXPECT_EQ(GetParseError(section), "") << tenant;
  }

  for (const char* tenant :
       {"contoso tenant", "-contoso.com", "contoso..com", "contoso.com.", "contoso/x"})
  {
    Json::Value section = MakeCredentialSection(ClientSecretMembers());
    section["Credentials"]["TenantId"] = tenant;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.TenantId: invalid value")) << tenant;
    EXPECT_TRUE(Contains(message, "expected a GUID or a domain name")) << tenant;
  }
}


TEST_F(ConfigurationTest, ClientIdMustBeGuid)
{
  for (const char* client :
       {"orthanc-app", "11111111-2222-3333-4444-55555555555",
        "11111111-2222-3333-4444-55555555555g", "111111112222333344445555555555555555"})
  {
    Json::Value section = MakeCredentialSection(ClientSecretMembers());
    section["Credentials"]["ClientId"] = client;
    EXPECT_TRUE(Contains(GetParseError(section), "AzureDicom.Credentials.ClientId: invalid value"))
        << client;
  }

  Json::Value upperCase = MakeCredentialSection(ClientSecretMembers());
  upperCase["Credentials"]["ClientId"] = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE";
  EXPECT_EQ(GetParseError(upperCase), "");
}


TEST_F(ConfigurationTest, ClientCertificateRules)
{
  const std::string base = std::string(R"("Type": "ClientCertificate", "TenantId": ")") +
                           kTenantId + R"(", "ClientId": ")" + kClientId + "\"";

  EXPECT_TRUE(Contains(GetParseError(MakeCredentialSection(base)),
                       "AzureDicom.Credentials.CertificatePath: missing; expected either the path "
                       "of a PEM or PKCS#12 file"));

  Json::Value missingFile = MakeCredentialSection(base);
  missingFile["Credentials"]["CertificatePath"] = (directory_ / "client.pem").string();
  EXPECT_TRUE(
      Contains(GetParseError(missingFile), "AzureDicom.Credentials.CertificatePath: file \""));
  EXPECT_TRUE(Contains(GetParseError(missingFile), "client.pem\" not found"));

  Json::Value withFile = MakeCredentialSection(base + R"(, "CertificatePassword": "pfx-pass")");
  withFile["Credentials"]["CertificatePath"] = WriteFile("client.pfx", "binary PKCS#12");
  const CredentialSettings credentials = ParseConfiguration(withFile).credentials;
  EXPECT_EQ(credentials.type, CredentialType::ClientCertificate);
  EXPECT_EQ(credentials.certificatePath, (directory_ / "client.pfx").string());
  EXPECT_EQ(credentials.certificatePassword, "pfx-pass");

  Json::Value withSecret = withFile;
  withSecret["Credentials"]["ClientSecret"] = kSecret;
  const std::string secretMessage = GetParseError(withSecret);
  EXPECT_TRUE(Contains(secretMessage,
                       "AzureDicom.Credentials.ClientSecret: not used by Type "
                       "ClientCertificate"));
  EXPECT_FALSE(Contains(secretMessage, kSecret));
}


TEST_F(ConfigurationTest, ClientCertificateFromKeyVault)
{
  Json::Value section = MakeKeyVaultSection();
  section["Credentials"]["Type"] = "ClientCertificate";
  EXPECT_EQ(ParseConfiguration(section).credentials.type, CredentialType::ClientCertificate);

  section["Credentials"]["CertificatePath"] = WriteFile("client.pem", kPemCertificate);
  EXPECT_TRUE(Contains(GetParseError(section),
                       "AzureDicom.Credentials.CertificatePath: set together with KeyVault"));
}


TEST_F(ConfigurationTest, ManagedIdentityRules)
{
  const Configuration systemAssigned =
      ParseConfiguration(MakeCredentialSection(R"("Type": "ManagedIdentity")"));
  EXPECT_EQ(systemAssigned.credentials.type, CredentialType::ManagedIdentity);
  EXPECT_EQ(systemAssigned.credentials.clientId, "");

  const Configuration userAssigned = ParseConfiguration(MakeCredentialSection(
      std::string(R"("Type": "ManagedIdentity", "TenantId": "", "ClientId": ")") + kClientId +
      "\""));
  EXPECT_EQ(userAssigned.credentials.clientId, kClientId);

  for (const char* key :
       {"TenantId", "ClientSecret", "CertificatePath", "CertificatePassword", "AuthorityHost"})
  {
    Json::Value section = MakeCredentialSection(R"("Type": "ManagedIdentity")");
    section["Credentials"][key] = kSecret;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, std::string("AzureDicom.Credentials.") + key +
                                      ": not used by a managed identity"));
    EXPECT_FALSE(Contains(message, kSecret)) << key;
  }
}


TEST_F(ConfigurationTest, WorkloadIdentityRules)
{
  EXPECT_EQ(GetParseError(MakeCredentialSection(R"("Type": "WorkloadIdentity")")), "");

  const CredentialSettings credentials =
      ParseConfiguration(
          MakeCredentialSection(std::string(R"("Type": "WorkloadIdentity", "TenantId": ")") +
                                kTenantId + R"(", "ClientId": ")" + kClientId + "\""))
          .credentials;
  EXPECT_EQ(credentials.type, CredentialType::WorkloadIdentity);
  EXPECT_EQ(credentials.tenantId, kTenantId);
  EXPECT_EQ(credentials.clientId, kClientId);

  const std::string message = GetParseError(MakeCredentialSection(
      std::string(R"("Type": "WorkloadIdentity", "ClientSecret": ")") + kSecret + "\""));
  EXPECT_TRUE(
      Contains(message, "AzureDicom.Credentials.ClientSecret: not used by a workload identity"));
  EXPECT_FALSE(Contains(message, kSecret));
}


TEST_F(ConfigurationTest, NoneTakesNoOtherKey)
{
  EXPECT_EQ(GetParseError(MakeCredentialSection(R"("Type": "None", "ClientId": "")")), "");

  const std::string message = GetParseError(
      MakeCredentialSection(std::string(R"("Type": "None", "ClientId": ")") + kClientId + "\""));
  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.ClientId: not used with Type None"));
  EXPECT_TRUE(Contains(message, "expected only the key Type"));
}


TEST_F(ConfigurationTest, KeyVaultOnlyForSecretTypes)
{
  for (const char* type : {"None", "ManagedIdentity", "WorkloadIdentity"})
  {
    Json::Value section = MakeKeyVaultSection();
    section["Credentials"] = Json::Value(Json::objectValue);
    section["Credentials"]["Type"] = type;
    section["Credentials"]["KeyVault"] = MakeKeyVaultSection()["Credentials"]["KeyVault"];
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, std::string("AzureDicom.Credentials.KeyVault: not allowed with "
                                              "Type ") +
                                      type));
    EXPECT_TRUE(Contains(message,
                         "expected KeyVault only with Type ClientSecret or "
                         "ClientCertificate"));
  }
}


TEST_F(ConfigurationTest, AuthorityHostRules)
{
  Json::Value section = MakeCredentialSection(ClientSecretMembers());
  section["Credentials"]["AuthorityHost"] = "https://login.microsoftonline.us/";
  EXPECT_EQ(ParseConfiguration(section).credentials.authorityHost,
            "https://login.microsoftonline.us");

  section["Credentials"]["AuthorityHost"] = "http://127.0.0.1:9000/";
  EXPECT_EQ(ParseConfiguration(section).credentials.authorityHost, "http://127.0.0.1:9000");

  section["Credentials"]["AuthorityHost"] = "";
  EXPECT_EQ(ParseConfiguration(section).credentials.authorityHost,
            "https://login.microsoftonline.com");

  section["Credentials"]["AuthorityHost"] = "http://login.example.com";
  EXPECT_TRUE(Contains(GetParseError(section),
                       "AzureDicom.Credentials.AuthorityHost: "
                       "\"http://login.example.com\" uses plain http://"));
}


TEST_F(ConfigurationTest, ScopeDefaultAndOverride)
{
  Json::Value section = MakeCredentialSection(ClientSecretMembers());
  section["Credentials"]["Scope"] = "api://my-dicom/.default";
  EXPECT_EQ(ParseConfiguration(section).credentials.scope, "api://my-dicom/.default");

  section["Credentials"]["Scope"] = "";
  EXPECT_EQ(ParseConfiguration(section).credentials.scope,
            "https://dicom.healthcareapis.azure.com/.default");

  Json::Value vault = MakeKeyVaultSection(
      R"("Credentials": {"Type": "ManagedIdentity", "Scope": "https://vault.azure.cn/.default"})");
  EXPECT_EQ(ParseConfiguration(vault).credentials.keyVault->credentials->scope,
            "https://vault.azure.cn/.default");
}


TEST_F(ConfigurationTest, ScopeRules)
{
  Json::Value section = MakeCredentialSection(ClientSecretMembers());
  for (const char* scope :
       {"garbage", "https://dicom.healthcareapis.azure.com", "/.default",
        "https://dicom example/.default", "https://dicom.healthcareapis.azure.com/.default\n"})
  {
    section["Credentials"]["Scope"] = scope;
    const std::string error = GetParseError(section);
    EXPECT_TRUE(Contains(error, "AzureDicom.Credentials.Scope: invalid value")) << error;
    EXPECT_TRUE(Contains(error, "followed by /.default")) << error;
  }

  Json::Value vault = MakeKeyVaultSection(
      R"("Credentials": {"Type": "ManagedIdentity", "Scope": "https://vault.azure.net"})");
  EXPECT_TRUE(Contains(GetParseError(vault),
                       "AzureDicom.Credentials.KeyVault.Credentials.Scope: invalid value"));
}


TEST_F(ConfigurationTest, VaultUrlRules)
{
  Json::Value section = MakeKeyVaultSection();
  Json::Value& keyVault = section["Credentials"]["KeyVault"];

  keyVault["VaultUrl"] = "http://127.0.0.1:8200/";
  EXPECT_EQ(ParseConfiguration(section).credentials.keyVault->vaultUrl, "http://127.0.0.1:8200");

  keyVault["VaultUrl"] = "http://myvault.vault.azure.net";
  EXPECT_TRUE(
      Contains(GetParseError(section),
               "AzureDicom.Credentials.KeyVault.VaultUrl: \"http://myvault.vault.azure.net\" "
               "uses plain http://"));

  keyVault.removeMember("VaultUrl");
  EXPECT_TRUE(Contains(GetParseError(section),
                       "AzureDicom.Credentials.KeyVault.VaultUrl: missing; expected the URL of the "
                       "vault"));
}


TEST_F(ConfigurationTest, SecretNameRules)
{
  Json::Value section = MakeKeyVaultSection();
  Json::Value& keyVault = section["Credentials"]["KeyVault"];

  keyVault["SecretName"] = std::string(127, 'a');
  EXPECT_EQ(GetParseError(section), "");

  keyVault["SecretName"] = std::string(128, 'a');
  EXPECT_TRUE(Contains(GetParseError(section),
                       "AzureDicom.Credentials.KeyVault.SecretName: "
                       "invalid value"));

  keyVault["SecretName"] = "bad_name";
  EXPECT_TRUE(Contains(GetParseError(section),
                       "AzureDicom.Credentials.KeyVault.SecretName: "
                       "invalid value \"bad_name\"; expected 1 to 127 "
                       "letters, digits or '-'"));

  keyVault["SecretName"] = "";
  EXPECT_TRUE(Contains(GetParseError(section),
                       "AzureDicom.Credentials.KeyVault.SecretName: "
                       "missing"));
}


TEST_F(ConfigurationTest, SecretVersionRules)
{
  Json::Value section = MakeKeyVaultSection();
  Json::Value& keyVault = section["Credentials"]["KeyVault"];

  keyVault["SecretVersion"] = "0123456789abcdef0123456789ABCDEF";
  EXPECT_EQ(ParseConfiguration(section).credentials.keyVault->secretVersion,
            "0123456789abcdef0123456789ABCDEF");

  for (const std::string& version :
       {std::string(31, 'a'), std::string(33, 'a'), std::string(32, 'g')})
  {
    keyVault["SecretVersion"] = version;
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.SecretVersion: invalid value"))
        << version;
    EXPECT_TRUE(Contains(message, "expected 32 hexadecimal digits")) << version;
  }
}


TEST_F(ConfigurationTest, VaultCredentialsRules)
{
  const Json::Value withSecret =
      MakeKeyVaultSection(std::string(R"("Credentials": {)") + ClientSecretMembers() + "}");
  const Configuration configuration = ParseConfiguration(withSecret);
  const CredentialSettings& vault = *configuration.credentials.keyVault->credentials;
  EXPECT_EQ(vault.type, CredentialType::ClientSecret);
  EXPECT_EQ(vault.clientSecret, kSecret);
  EXPECT_EQ(vault.scope, "https://vault.azure.net/.default");

  const std::string nested = GetParseError(MakeKeyVaultSection(
      R"("Credentials": {"Type": "ClientSecret", "KeyVault": {"SecretName": "x"}})"));
  EXPECT_TRUE(Contains(nested,
                       "AzureDicom.Credentials.KeyVault.Credentials.KeyVault: not allowed "
                       "in the credentials that read Key Vault"));

  EXPECT_TRUE(Contains(GetParseError(MakeKeyVaultSection(R"("Credentials": {})")),
                       "AzureDicom.Credentials.KeyVault.Credentials.Type: missing"));
}


TEST_F(ConfigurationTest, VaultCredentialTypeNoneRejected)
{
  const std::string error =
      GetParseError(MakeKeyVaultSection(R"("Credentials": {"Type": "None"})"));

  EXPECT_TRUE(Contains(error, "AzureDicom.Credentials.KeyVault.Credentials.Type: \"None\""));
  EXPECT_TRUE(Contains(error, "expected one of ManagedIdentity, ClientSecret"));
}


TEST_F(ConfigurationTest, RedactedJsonHidesSecrets)
{
  const Configuration configuration =
      ParseConfiguration(MakeCredentialSection(ClientSecretMembers()));
  const Json::Value json = ToRedactedJson(configuration);

  EXPECT_EQ(json["Credentials"]["ClientSecret"].asString(), "<redacted>");
  EXPECT_FALSE(Contains(ToText(json), kSecret));
  EXPECT_EQ(configuration.credentials.clientSecret, kSecret);
}


TEST_F(ConfigurationTest, RedactedJsonHidesCertificatePassword)
{
  Json::Value section = MakeCredentialSection(
      std::string(R"("Type": "ClientCertificate", "TenantId": ")") + kTenantId +
      R"(", "ClientId": ")" + kClientId + R"(", "CertificatePassword": ")" + kSecret + "\"");
  section["Credentials"]["CertificatePath"] = WriteFile("client.pfx", "binary PKCS#12");
  const Json::Value json = ToRedactedJson(ParseConfiguration(section));

  EXPECT_EQ(json["Credentials"]["CertificatePassword"].asString(), "<redacted>");
  EXPECT_EQ(json["Credentials"]["CertificatePath"].asString(),
            (directory_ / "client.pfx").string());
  EXPECT_FALSE(Contains(ToText(json), kSecret));
}


TEST_F(ConfigurationTest, RedactedJsonKeepsEmptySecret)
{
  Json::Value section =
      MakeKeyVaultSection(R"("SecretVersion": "0123456789abcdef0123456789abcdef")");
  const Json::Value json = ToRedactedJson(ParseConfiguration(section));

  EXPECT_EQ(json["Credentials"]["ClientSecret"].asString(), "");
  EXPECT_EQ(json["Credentials"]["KeyVault"]["VaultUrl"].asString(),
            "https://myvault.vault.azure.net");
  EXPECT_EQ(json["Credentials"]["KeyVault"]["SecretName"].asString(),
            "orthanc-dicom-client-secret");
  EXPECT_EQ(json["Credentials"]["KeyVault"]["SecretVersion"].asString(),
            "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(json["Credentials"]["KeyVault"]["RefreshSeconds"].asUInt(), 3600u);
  EXPECT_EQ(json["Credentials"]["KeyVault"]["Credentials"]["Type"].asString(), "ManagedIdentity");
}


TEST_F(ConfigurationTest, RedactedJsonHasDefaults)
{
  const Json::Value json = ToRedactedJson(ParseConfiguration(MakeSection()));

  EXPECT_TRUE(json["Enable"].asBool());
  EXPECT_EQ(json["ServiceUrl"].asString(), kServiceUrl);
  EXPECT_EQ(json["ApiVersion"].asString(), "v2");
  EXPECT_EQ(json["Partition"].asString(), "");
  EXPECT_EQ(json["Database"].asString(), "");
  EXPECT_EQ(json["Workers"].asUInt(), 4u);
  EXPECT_EQ(json["MaxInstancesPerRequest"].asUInt(), 20u);
  EXPECT_EQ(json["MaxRequestSizeMB"].asUInt(), 64u);
  EXPECT_EQ(json["RequestTimeoutSeconds"].asUInt(), 300u);
  EXPECT_EQ(json["LeaseSeconds"].asUInt(), 360u);
  EXPECT_DOUBLE_EQ(json["Retry"]["InitialDelaySeconds"].asDouble(), 2);
  EXPECT_DOUBLE_EQ(json["Retry"]["MaxDelaySeconds"].asDouble(), 600);
  EXPECT_EQ(json["Retry"]["MaxAttempts"].asUInt(), 10u);
  EXPECT_TRUE(json["Tls"]["VerifyPeer"].asBool());
  EXPECT_EQ(json["Tls"]["CaCertificates"].asString(), "");
  EXPECT_FALSE(json["MirrorDeletes"].asBool());
  EXPECT_EQ(json["OnConflict"].asString(), "Keep");
  EXPECT_EQ(json["Credentials"]["Type"].asString(), "None");
  EXPECT_EQ(json["Credentials"].size(), 1u);
}


TEST_F(ConfigurationTest, RedactedJsonParsesAgain)
{
  const std::vector<Json::Value> sections = {
      MakeSection(),
      MakeKeyVaultSection(R"("SecretVersion": "0123456789abcdef0123456789abcdef")"),
      MakeCredentialSection(R"("Type": "ManagedIdentity")"),
      MakeCredentialSection(R"("Type": "WorkloadIdentity")"),
      MakeSection(
          R"("Partition": "site-a", "Retry": {"InitialDelaySeconds": 0.25}, "LeaseSeconds": 999)"),
      ParseJson(R"({"Enable": false})"),
  };

  for (const Json::Value& section : sections)
  {
    const Json::Value first = ToRedactedJson(ParseConfiguration(section));
    const Json::Value second = ToRedactedJson(ParseConfiguration(first));
    EXPECT_EQ(ToText(second), ToText(first));
  }
}


TEST_F(ConfigurationTest, RedactedJsonHidesDatabasePassword)
{
  struct Case
  {
    const char* database;
    const char* redacted;
  };
  const std::vector<Case> cases = {
      {"postgresql://orthanc:Pa55-word@db:5432/orthanc",
       "postgresql://orthanc:<redacted>@db:5432/orthanc"},
      {"postgresql://db/orthanc?user=orthanc&password=Pa55-word&sslmode=require",
       "postgresql://db/orthanc?user=orthanc&password=<redacted>&sslmode=require"},
      {"host=db password=Pa55-word dbname=orthanc", "host=db password=<redacted> dbname=orthanc"},
      {"host=db password='Pa55 \\' word' dbname=orthanc",
       "host=db password=<redacted> dbname=orthanc"},
      {"postgresql://orthanc@db/orthanc", "postgresql://orthanc@db/orthanc"},
      {"/var/lib/orthanc/mirror.db", "/var/lib/orthanc/mirror.db"},
      {"host=db password = Pa55-word dbname=orthanc",
       "host=db password = <redacted> dbname=orthanc"},
      {"host=db sslpassword=Key-Pa55 sslkey=/etc/key.pem",
       "host=db sslpassword=<redacted> sslkey=/etc/key.pem"},
      {"postgresql://db/orthanc?sslpassword=Key-Pa55&password=Pa55-word",
       "postgresql://db/orthanc?sslpassword=<redacted>&password=<redacted>"},
      {"host=db passfile=/etc/pgpass", "host=db passfile=/etc/pgpass"},
  };

  for (const Case& c : cases)
  {
    Json::Value section = MakeSection();
    section["Database"] = c.database;
    const Configuration configuration = ParseConfiguration(section);
    const Json::Value json = ToRedactedJson(configuration);
    EXPECT_EQ(json["Database"].asString(), c.redacted);
    EXPECT_FALSE(Contains(ToText(json), "Pa55")) << c.database;
    EXPECT_EQ(configuration.database, c.database);
  }
}


TEST(RedactDatabaseTest, LibpqForms)
{
  struct Case
  {
    const char* database;
    const char* redacted;
  };
  const std::vector<Case> cases = {
      {"postgresql://u@127.0.0.1:1/db?%70assword=Pa55Enc",
       "postgresql://u@127.0.0.1:1/db?%70assword=<redacted>"},
      {"host=db password=Pa55\\ Tail dbname=x", "host=db password=<redacted> dbname=x"},
      {"host=db port=1\npassword=Pa55Nl", "host=db port=1\npassword=<redacted>"},
      {"host=db\tpassword=Pa55Tab", "host=db\tpassword=<redacted>"},
      {"host=db password='Pa55 \\\\' user=u", "host=db password=<redacted> user=u"},
      {"postgresql://u:Pa55@Tail@127.0.0.1:1/db", "postgresql://<redacted>@127.0.0.1:1/<redacted>"},
      {"postgresql://u:Pa55List@h1:1,h2:2/db", "postgresql://u:<redacted>@h1:1,h2:2/db"},
      {"host=db dbname='postgresql://u:Pa55Uri@h/db'", "host=db dbname=<redacted>"},
      {"postgresql://h/db?dbname=password%3DPa55Exp", "postgresql://h/db?dbname=<redacted>"},
      {"host=db password='Pa55Open", "<redacted>"},
      {"host=db Pa55Word", "<redacted>"},
      {"postgresql://h/db?password=Pa55%zz", "postgresql://<redacted>@h/<redacted>"},
      {"postgresql://h/db?password=Pa55=x", "postgresql://<redacted>@h/<redacted>"},
  };

  for (const Case& c : cases)
  {
    const std::string redacted = RedactDatabase(c.database);
    EXPECT_EQ(redacted, c.redacted) << c.database;
    EXPECT_FALSE(Contains(redacted, "Pa55")) << c.database;
  }
}


TEST(RedactDatabaseTest, AmbiguousUri)
{
  EXPECT_TRUE(IsAmbiguousDatabaseUri("postgresql://u:Pa55@Tail@127.0.0.1:1/db"));
  EXPECT_FALSE(IsAmbiguousDatabaseUri("postgresql://u:Pa55%40Tail@127.0.0.1:1/db"));
  EXPECT_FALSE(IsAmbiguousDatabaseUri("postgresql://u:Pa55@h/db?application_name=a@b"));
  EXPECT_FALSE(IsAmbiguousDatabaseUri("host=db password=a@b@c"));
}


TEST(RedactDatabaseTest, LibpqMessageQuotes)
{
  const std::string database = "postgresql://u:Pa55@Tail@127.0.0.1:1/db";
  const std::string message = RedactPostgreSqlMessage(
      "could not translate host name \"Tail@127.0.0.1\" to address; user \"u\"",
      RedactDatabase(database));

  EXPECT_EQ(message,
            "could not translate host name \"<redacted>\" to address; user \"<redacted>\"");
  EXPECT_EQ(RedactPostgreSqlMessage("server at \"127.0.0.1\", port 1 failed",
                                    "host=127.0.0.1 password=<redacted>"),
            "server at \"127.0.0.1\", port 1 failed");
}


TEST_F(ConfigurationTest, SecretsNeverInErrors)
{
  const std::string secret = kSecret;
  const std::vector<Json::Value> sections = {
      MakeCredentialSection(R"("Type": "ClientSecret", "ClientSecret": 987654321)"),
      MakeCredentialSection(R"("Type": "ClientSecret", "ClientSecret": [")" + secret + "\"]"),
      MakeCredentialSection(R"("Type": "ClientCertificate", "CertificatePassword": {"v": ")" +
                            secret + "\"}"),
      MakeCredentialSection(R"("Type": "ClientSecret", "ClientSecret": ")" + secret + "\""),
      MakeCredentialSection(R"("Type": "ManagedIdentity", "ClientSecret": ")" + secret + "\""),
      MakeCredentialSection(R"("Type": "None", "CertificatePassword": ")" + secret + "\""),
      MakeCredentialSection(ClientSecretMembers() + R"(, "CertificatePassword": ")" + secret +
                            "\""),
      MakeCredentialSection(ClientSecretMembers() + R"(, "ClientId": "not-a-guid")"),
      MakeKeyVaultSection(R"("Credentials": {"Type": "ManagedIdentity", "ClientSecret": ")" +
                          secret + "\"}"),
      ParseJson(R"({"ServiceUrl": "https://user:)" + secret + R"(@host.example"})"),
  };

  for (const Json::Value& section : sections)
  {
    const std::string message = GetParseError(section);
    EXPECT_FALSE(message.empty()) << ToText(section);
    EXPECT_FALSE(Contains(message, secret)) << message;
    EXPECT_FALSE(Contains(message, "987654321")) << message;
  }
}


TEST_F(ConfigurationTest, SecretContainerNotShown)
{
  const std::string secret = kSecret;
  const std::string credentials = "{" + ClientSecretMembers() + "}";
  Json::Value vaultCredentials = MakeKeyVaultSection();
  vaultCredentials["Credentials"]["KeyVault"]["Credentials"] = ParseJson("[" + credentials + "]");
  Json::Value vault = MakeKeyVaultSection();
  vault["Credentials"]["KeyVault"] = ParseJson(R"([{"Credentials": )" + credentials + "}]");
  const std::vector<Json::Value> sections = {
      MakeSection(R"("Credentials": [)" + credentials + "]"),
      MakeSection(R"("Credentials": ")" + secret + "\""),
      vaultCredentials,
      vault,
      ParseJson(R"([{"Credentials": )" + credentials + "}]"),
      ParseJson(R"({"Enable": false, "Credentials": [)" + credentials + "]}"),
  };

  for (const Json::Value& section : sections)
  {
    const std::string message = GetParseError(section);
    EXPECT_TRUE(Contains(message, "not shown")) << ToText(section);
    EXPECT_FALSE(Contains(message, secret)) << message;
  }
}


TEST_F(ConfigurationTest, CredentialTypeNames)
{
  EXPECT_STREQ(ToString(CredentialType::None), "None");
  EXPECT_STREQ(ToString(CredentialType::ClientSecret), "ClientSecret");
  EXPECT_STREQ(ToString(CredentialType::ClientCertificate), "ClientCertificate");
  EXPECT_STREQ(ToString(CredentialType::ManagedIdentity), "ManagedIdentity");
  EXPECT_STREQ(ToString(CredentialType::WorkloadIdentity), "WorkloadIdentity");
}


TEST_F(ConfigurationTest, UnverifiedRemoteServiceRejected)
{
  const std::string error = GetParseError(MakeSection(R"("Tls": {"VerifyPeer": false})"));

  EXPECT_TRUE(Contains(error, "AzureDicom.Tls.VerifyPeer"));
  EXPECT_TRUE(Contains(error, "AzureDicom.ServiceUrl"));
  EXPECT_TRUE(Contains(error, "AllowUnverifiedRemoteHosts"));
}


TEST_F(ConfigurationTest, UnverifiedRemoteVaultRejected)
{
  Json::Value section = MakeKeyVaultSection();
  section["ServiceUrl"] = "http://127.0.0.1:8042";
  section["Credentials"]["AuthorityHost"] = "http://127.0.0.1:9000";
  section["Tls"]["VerifyPeer"] = false;

  EXPECT_TRUE(Contains(GetParseError(section), "AzureDicom.Credentials.KeyVault.VaultUrl"));
}


TEST_F(ConfigurationTest, UnverifiedRemoteAllowedExplicitly)
{
  const Configuration configuration = ParseConfiguration(
      MakeSection(R"("Tls": {"VerifyPeer": false, "AllowUnverifiedRemoteHosts": true})"));

  EXPECT_FALSE(configuration.tls.verifyPeer);
  EXPECT_TRUE(configuration.tls.allowUnverifiedRemoteHosts);
  EXPECT_FALSE(GetUnverifiedTlsWarning(configuration).empty());
}


TEST_F(ConfigurationTest, UnverifiedLoopbackAccepted)
{
  Json::Value section = MakeSection(R"("Tls": {"VerifyPeer": false})");
  section["ServiceUrl"] = "https://127.0.0.1:8443";

  const Configuration configuration = ParseConfiguration(section);

  EXPECT_FALSE(configuration.tls.verifyPeer);
  EXPECT_TRUE(GetUnverifiedTlsWarning(configuration).empty());
}


TEST_F(ConfigurationTest, UnverifiedWarningNamesRemoteVault)
{
  Json::Value section = MakeKeyVaultSection();
  section["ServiceUrl"] = "http://127.0.0.1:8042";
  section["Credentials"]["AuthorityHost"] = "http://127.0.0.1:9000";
  section["Tls"]["VerifyPeer"] = false;
  section["Tls"]["AllowUnverifiedRemoteHosts"] = true;

  const std::string warning = GetUnverifiedTlsWarning(ParseConfiguration(section));

  EXPECT_TRUE(Contains(warning, "AzureDicom.Credentials.KeyVault.VaultUrl"));
  EXPECT_FALSE(Contains(warning, "AzureDicom.ServiceUrl"));
}


namespace
{
// A section whose only remote host is the Entra ID host of the credential that reads Key Vault,
// with Tls.VerifyPeer false.
Json::Value MakeUnverifiedVaultCredentialSection(const std::string& authorityHost)
{
  Json::Value section = MakeKeyVaultSection();
  section["ServiceUrl"] = "http://127.0.0.1:8042";
  section["Credentials"]["AuthorityHost"] = "http://127.0.0.1:9000";
  section["Credentials"]["KeyVault"]["VaultUrl"] = "http://127.0.0.1:9001";
  section["Credentials"]["KeyVault"]["Credentials"] = ParseJson("{" + ClientSecretMembers() + "}");
  if (!authorityHost.empty())
  {
    section["Credentials"]["KeyVault"]["Credentials"]["AuthorityHost"] = authorityHost;
  }
  section["Tls"]["VerifyPeer"] = false;
  return section;
}
}  // namespace


TEST_F(ConfigurationTest, UnverifiedRemoteVaultAuthorityRejected)
{
  const char* const key = "AzureDicom.Credentials.KeyVault.Credentials.AuthorityHost";

  EXPECT_TRUE(Contains(GetParseError(MakeUnverifiedVaultCredentialSection("")), key));
  EXPECT_TRUE(Contains(
      GetParseError(MakeUnverifiedVaultCredentialSection("https://login.example.com")), key));
}


TEST_F(ConfigurationTest, UnverifiedWarningNamesVaultAuthority)
{
  Json::Value section = MakeUnverifiedVaultCredentialSection("");
  section["Tls"]["AllowUnverifiedRemoteHosts"] = true;

  const std::string warning = GetUnverifiedTlsWarning(ParseConfiguration(section));

  EXPECT_TRUE(Contains(warning, "AzureDicom.Credentials.KeyVault.Credentials.AuthorityHost"));
  EXPECT_TRUE(Contains(warning, "login.microsoftonline.com"));
}


TEST_F(ConfigurationTest, UnverifiedLoopbackVaultAuthorityAccepted)
{
  const Json::Value section = MakeUnverifiedVaultCredentialSection("http://127.0.0.1:9002");

  EXPECT_EQ(GetParseError(section), "");
}
