#include "Common/Exception.h"
#include "Sync/Configuration.h"
#include "Sync/RuntimeSettings.h"

#include "TestSupport.h"

#include <gtest/gtest.h>
#include <json/reader.h>
#include <json/writer.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace AzureDicom;
using AzureDicom::Testing::ParseJson;
using AzureDicom::Testing::ToText;


namespace
{
const char* const SERVICE_URL = "https://example-dicom.dicom.azurehealthcareapis.com";
const char* const SECRET_VERSION = "0123456789abcdef0123456789abcdef";
const char* const SECRET_VERSION_KEY = "Credentials.KeyVault.SecretVersion";


// A section that sets each runtime key but the secret version, which needs Key Vault, and one
// key that cannot change at run time (Retry.MaxAttempts).
Json::Value MakeFileSection()
{
  return ParseJson(std::string("{\"ServiceUrl\": \"") + SERVICE_URL +
                   "\", \"ApiVersion\": \"v2\", \"Partition\": \"a\", \"Workers\": 4, "
                   "\"MaxInstancesPerRequest\": 20, \"MaxRequestSizeMB\": 64, "
                   "\"Retry\": {\"MaxAttempts\": 5}}");
}


// A section whose client secret is in Key Vault, without a pinned version.
Json::Value MakeKeyVaultSection()
{
  Json::Value section = MakeFileSection();
  section["Credentials"] = ParseJson(
      "{\"Type\": \"ClientSecret\", \"TenantId\": \"72f988bf-86f1-41af-91ab-2d7cd011db47\", "
      "\"ClientId\": \"11111111-2222-3333-4444-555555555555\", \"KeyVault\": {\"VaultUrl\": "
      "\"https://myvault.vault.azure.net\", \"SecretName\": \"dicom-secret\", "
      "\"RefreshSeconds\": 600}}");
  return section;
}


// Calls UpdateOverrides and returns the message of the BadRequest it throws, or "" when it
// throws nothing. Another error code fails the test.
std::string GetBadRequestMessage(const Json::Value& fileSection, const Json::Value& overrides,
                                 const Json::Value& body)
{
  try
  {
    UpdateOverrides(fileSection, overrides, body);
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(e.GetCode(), ErrorCode::BadRequest) << e.what();
    return e.what();
  }
  return "";
}


bool Contains(const std::string& text, const std::string& part)
{
  return text.find(part) != std::string::npos;
}
}  // namespace


TEST(RuntimeSettingsTest, RuntimeKeysAreListed)
{
  const std::vector<std::string> expected = {
      "ServiceUrl",       "ApiVersion",      "Partition", "Workers", "MaxInstancesPerRequest",
      "MaxRequestSizeMB", SECRET_VERSION_KEY};
  EXPECT_EQ(GetRuntimeKeys(), expected);
}


TEST(RuntimeSettingsTest, UpdateSetsEachRuntimeKey)
{
  struct Case
  {
    std::string body;
    std::string expectedOverrides;
  };
  const std::vector<Case> cases = {
      {R"({"ServiceUrl": "https://other-dicom.dicom.azurehealthcareapis.com"})",
       R"({"ServiceUrl": "https://other-dicom.dicom.azurehealthcareapis.com"})"},
      {R"({"ApiVersion": "v1"})", R"({"ApiVersion": "v1"})"},
      {R"({"Partition": "b"})", R"({"Partition": "b"})"},
      {R"({"Partition": ""})", R"({"Partition": ""})"},
      {R"({"Workers": 8})", R"({"Workers": 8})"},
      {R"({"MaxInstancesPerRequest": 50})", R"({"MaxInstancesPerRequest": 50})"},
      {R"({"MaxRequestSizeMB": 128})", R"({"MaxRequestSizeMB": 128})"},
  };

  for (const Case& testCase : cases)
  {
    const Json::Value overrides =
        UpdateOverrides(MakeFileSection(), Json::objectValue, ParseJson(testCase.body));
    EXPECT_EQ(overrides, ParseJson(testCase.expectedOverrides))
        << testCase.body << " gave " << ToText(overrides);
  }
}


TEST(RuntimeSettingsTest, UpdatePinsSecretVersion)
{
  const Json::Value body =
      ParseJson(std::string("{\"Credentials\": {\"KeyVault\": {\"SecretVersion\": \"") +
                SECRET_VERSION + "\"}}}");

  const Json::Value overrides = UpdateOverrides(MakeKeyVaultSection(), Json::objectValue, body);

  EXPECT_EQ(overrides, body) << ToText(overrides);
  const Configuration merged = ParseConfiguration(MergeSettings(MakeKeyVaultSection(), overrides));
  ASSERT_TRUE(merged.credentials.keyVault);
  EXPECT_EQ(merged.credentials.keyVault->secretVersion, SECRET_VERSION);
  EXPECT_EQ(merged.credentials.keyVault->secretName, "dicom-secret");
  EXPECT_EQ(merged.credentials.keyVault->refreshSeconds, 600u);
}


TEST(RuntimeSettingsTest, UpdateStoresNormalizedValues)
{
  const Json::Value overrides = UpdateOverrides(
      MakeFileSection(), Json::objectValue,
      ParseJson(R"({"ServiceUrl": "https://other.example.com//", "Workers": "8"})"));

  EXPECT_EQ(overrides["ServiceUrl"], Json::Value("https://other.example.com"));
  EXPECT_EQ(overrides["Workers"], Json::Value(8));
  EXPECT_EQ(overrides.size(), 2u) << ToText(overrides);
}


TEST(RuntimeSettingsTest, UpdateAcceptsLoopbackHttp)
{
  const Json::Value overrides =
      UpdateOverrides(MakeFileSection(), Json::objectValue,
                      ParseJson(R"({"ServiceUrl": "http://127.0.0.1:8042"})"));

  EXPECT_EQ(overrides["ServiceUrl"], Json::Value("http://127.0.0.1:8042"));
}


TEST(RuntimeSettingsTest, UpdateKeepsOtherOverrides)
{
  const Json::Value current = ParseJson(R"({"Partition": "b", "Workers": 8})");

  const Json::Value overrides =
      UpdateOverrides(MakeFileSection(), current, ParseJson(R"({"MaxRequestSizeMB": 32})"));

  EXPECT_EQ(overrides, ParseJson(R"({"Partition": "b", "Workers": 8, "MaxRequestSizeMB": 32})"))
      << ToText(overrides);
}


TEST(RuntimeSettingsTest, NullReturnsToFileValue)
{
  const Json::Value current = ParseJson(R"({"Partition": "b", "Workers": 8})");

  const Json::Value overrides =
      UpdateOverrides(MakeFileSection(), current, ParseJson(R"({"Partition": null})"));

  EXPECT_EQ(overrides, ParseJson(R"({"Workers": 8})")) << ToText(overrides);
}


TEST(RuntimeSettingsTest, NullUnpinsSecretVersion)
{
  const Json::Value current =
      ParseJson(std::string("{\"Credentials\": {\"KeyVault\": {\"SecretVersion\": \"") +
                SECRET_VERSION + "\"}}}");
  const Json::Value body = ParseJson(R"({"Credentials": {"KeyVault": {"SecretVersion": null}}})");

  const Json::Value overrides = UpdateOverrides(MakeKeyVaultSection(), current, body);

  EXPECT_TRUE(overrides.empty()) << ToText(overrides);
}


TEST(RuntimeSettingsTest, FileValueLeavesNoOverride)
{
  const std::vector<std::string> bodies = {
      R"({"Workers": 4})",
      R"({"Workers": "4"})",
      R"({"Partition": "a"})",
      R"({"ApiVersion": "v2"})",
      R"({"ServiceUrl": "https://example-dicom.dicom.azurehealthcareapis.com/"})",
      R"({"MaxInstancesPerRequest": 20, "MaxRequestSizeMB": 64})",
  };

  for (const std::string& body : bodies)
  {
    const Json::Value overrides =
        UpdateOverrides(MakeFileSection(), Json::objectValue, ParseJson(body));
    EXPECT_TRUE(overrides.empty()) << body << " gave " << ToText(overrides);
  }

  // Setting a key back to the file's value removes its override.
  const Json::Value overrides = UpdateOverrides(MakeFileSection(), ParseJson(R"({"Workers": 8})"),
                                                ParseJson(R"({"Workers": 4})"));
  EXPECT_TRUE(overrides.empty()) << ToText(overrides);
}


TEST(RuntimeSettingsTest, PausedIsIgnored)
{
  const Json::Value overrides = UpdateOverrides(MakeFileSection(), Json::objectValue,
                                                ParseJson(R"({"Paused": true, "Partition": "b"})"));

  EXPECT_EQ(overrides, ParseJson(R"({"Partition": "b"})")) << ToText(overrides);
}


TEST(RuntimeSettingsTest, EmptyBodyKeepsOverrides)
{
  const Json::Value current = ParseJson(R"({"Partition": "b"})");

  EXPECT_EQ(UpdateOverrides(MakeFileSection(), current, Json::objectValue), current);
}


TEST(RuntimeSettingsTest, InvalidChangesNameTheKey)
{
  struct Case
  {
    std::string body;
    std::string key;  // the key that the message names
  };
  const std::vector<Case> cases = {
      {R"({"Foo": 1})", "AzureDicom.Foo"},
      {R"({"Retry": {"MaxAttempts": 3}})", "AzureDicom.Retry"},
      {R"({"Credentials": {"ClientSecret": "x"}})", "AzureDicom.Credentials.ClientSecret"},
      {R"({"Credentials": {"KeyVault": {"VaultUrl": "https://x.vault.azure.net"}}})",
       "AzureDicom.Credentials.KeyVault.VaultUrl"},
      {R"({"Credentials": "x"})", "AzureDicom.Credentials"},
      {R"({"Enable": false})", "AzureDicom.Enable"},
      {R"({"Credentials": {"KeyVault": {"SecretVersion": "0123456789abcdef0123456789abcdef"}}})",
       "AzureDicom.Credentials.KeyVault.SecretVersion"},
      {R"({"Workers": 0})", "AzureDicom.Workers"},
      {R"({"Workers": "x"})", "AzureDicom.Workers"},
      {R"({"Workers": 65})", "AzureDicom.Workers"},
      {R"({"MaxInstancesPerRequest": 0})", "AzureDicom.MaxInstancesPerRequest"},
      {R"({"MaxRequestSizeMB": 4096})", "AzureDicom.MaxRequestSizeMB"},
      {R"({"ApiVersion": "v9"})", "AzureDicom.ApiVersion"},
      {R"({"Partition": "no spaces"})", "AzureDicom.Partition"},
      {R"({"ServiceUrl": "http://dicom.example.com"})", "AzureDicom.ServiceUrl"},
      {R"({"ServiceUrl": "https://dicom.example.com/studies"})", "AzureDicom.ServiceUrl"},
      {R"({"ServiceUrl": ""})", "AzureDicom.ServiceUrl"},
  };

  for (const Case& testCase : cases)
  {
    const std::string message =
        GetBadRequestMessage(MakeFileSection(), Json::objectValue, ParseJson(testCase.body));
    EXPECT_TRUE(Contains(message, testCase.key))
        << testCase.body << " gave \"" << message << "\", expected the key " << testCase.key;
  }
}


TEST(RuntimeSettingsTest, NonRuntimeKeyListsRuntimeKeys)
{
  const std::string message =
      GetBadRequestMessage(MakeFileSection(), Json::objectValue, ParseJson(R"({"Retry": {}})"));

  EXPECT_TRUE(Contains(message, "cannot be changed at run time")) << message;
  EXPECT_TRUE(Contains(message, "Partition")) << message;
  EXPECT_TRUE(Contains(message, SECRET_VERSION_KEY)) << message;
  EXPECT_TRUE(Contains(message, "Paused")) << message;
}


TEST(RuntimeSettingsTest, DottedKeyNameRejected)
{
  const std::vector<std::string> bodies = {
      std::string("{\"") + SECRET_VERSION_KEY + "\": \"" + SECRET_VERSION + "\"}",
      R"({"Credentials": {"KeyVault.SecretVersion": null}})",
      R"({"Credentials": {"KeyVault": {"SecretVersion.": null}}})",
  };

  for (const std::string& body : bodies)
  {
    const std::string message =
        GetBadRequestMessage(MakeKeyVaultSection(), Json::objectValue, ParseJson(body));
    EXPECT_TRUE(Contains(message, "cannot contain '.'")) << body << " gave " << message;
    EXPECT_TRUE(Contains(message, "The keys that can change are")) << body << " gave " << message;
  }
}


TEST(RuntimeSettingsTest, RejectedValueGivesFileMessage)
{
  const Json::Value body = ParseJson(R"({"Workers": 0})");
  std::string fileMessage;
  try
  {
    ParseConfiguration(MergeSettings(MakeFileSection(), body));
  }
  catch (const Exception& e)
  {
    fileMessage = e.what();
  }
  ASSERT_FALSE(fileMessage.empty());

  const std::string message = GetBadRequestMessage(MakeFileSection(), Json::objectValue, body);

  EXPECT_TRUE(Contains(message, fileMessage)) << message;
}


TEST(RuntimeSettingsTest, SecretVersionNeedsKeyVault)
{
  const Json::Value body = ParseJson(std::string("{\"Credentials\": {\"KeyVault\": ") +
                                     "{\"SecretVersion\": \"" + SECRET_VERSION + "\"}}}");

  const std::string message = GetBadRequestMessage(MakeFileSection(), Json::objectValue, body);

  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.SecretVersion")) << message;
  EXPECT_TRUE(Contains(message, "Key Vault")) << message;
}


TEST(RuntimeSettingsTest, InvalidSecretVersionIsRejected)
{
  const Json::Value body =
      ParseJson(R"({"Credentials": {"KeyVault": {"SecretVersion": "not-a-version"}}})");

  const std::string message = GetBadRequestMessage(MakeKeyVaultSection(), Json::objectValue, body);

  EXPECT_TRUE(Contains(message, "AzureDicom.Credentials.KeyVault.SecretVersion")) << message;
}


TEST(RuntimeSettingsTest, OverridesParseWithFile)
{
  const Json::Value overrides = UpdateOverrides(
      MakeFileSection(), Json::objectValue,
      ParseJson(R"({"ApiVersion": "v1", "Partition": "b", "MaxRequestSizeMB": 16})"));

  const Configuration configuration =
      ParseConfiguration(MergeSettings(MakeFileSection(), overrides));

  EXPECT_EQ(configuration.serviceUrl, SERVICE_URL);
  EXPECT_EQ(configuration.apiVersion, "v1");
  EXPECT_EQ(configuration.partition, "b");
  EXPECT_EQ(configuration.maxRequestSizeMB, 16u);
  EXPECT_EQ(configuration.workers, 4u);
  EXPECT_EQ(configuration.retry.maxAttempts, 5u);
}


TEST(RuntimeSettingsTest, MergeAppliesNestedOverrides)
{
  const Json::Value overrides =
      ParseJson(std::string("{\"Partition\": \"b\", \"Credentials\": {\"KeyVault\": ") +
                "{\"SecretVersion\": \"" + SECRET_VERSION + "\"}}}");

  const Json::Value merged = MergeSettings(MakeKeyVaultSection(), overrides);

  EXPECT_EQ(merged["Partition"], Json::Value("b"));
  EXPECT_EQ(merged["Workers"], Json::Value(4));
  EXPECT_EQ(merged["Retry"]["MaxAttempts"], Json::Value(5));
  EXPECT_EQ(merged["Credentials"]["Type"], Json::Value("ClientSecret"));
  EXPECT_EQ(merged["Credentials"]["KeyVault"]["SecretVersion"], Json::Value(SECRET_VERSION));
  EXPECT_EQ(merged["Credentials"]["KeyVault"]["SecretName"], Json::Value("dicom-secret"));
  EXPECT_EQ(merged["Credentials"]["KeyVault"]["VaultUrl"],
            Json::Value("https://myvault.vault.azure.net"));
}


TEST(RuntimeSettingsTest, MergeWithoutOverridesKeepsFile)
{
  EXPECT_EQ(MergeSettings(MakeFileSection(), Json::objectValue), MakeFileSection());
  EXPECT_EQ(MergeSettings(MakeFileSection(), Json::nullValue), MakeFileSection());
  EXPECT_EQ(MergeSettings(Json::nullValue, ParseJson(R"({"Partition": "b"})")),
            ParseJson(R"({"Partition": "b"})"));
}


TEST(RuntimeSettingsTest, RuntimeValuesOfConfiguration)
{
  const Json::Value values = GetRuntimeValues(ParseConfiguration(MakeFileSection()));

  EXPECT_EQ(values["ServiceUrl"], Json::Value(SERVICE_URL));
  EXPECT_EQ(values["ApiVersion"], Json::Value("v2"));
  EXPECT_EQ(values["Partition"], Json::Value("a"));
  EXPECT_EQ(values["Workers"], Json::Value(4));
  EXPECT_EQ(values["MaxInstancesPerRequest"], Json::Value(20));
  EXPECT_EQ(values["MaxRequestSizeMB"], Json::Value(64));
  EXPECT_FALSE(values.isMember(SECRET_VERSION_KEY));
  EXPECT_FALSE(values.isMember("Paused"));
  EXPECT_EQ(values.size(), 6u) << ToText(values);

  // The same values read back from JSON text, as a stored snapshot is, compare equal.
  EXPECT_EQ(ParseJson(ToText(values)), values);
}


TEST(RuntimeSettingsTest, RuntimeValuesWithKeyVault)
{
  Json::Value section = MakeKeyVaultSection();
  section["Credentials"]["KeyVault"]["SecretVersion"] = SECRET_VERSION;

  const Json::Value values = GetRuntimeValues(ParseConfiguration(section));

  EXPECT_EQ(values[SECRET_VERSION_KEY], Json::Value(SECRET_VERSION));
  EXPECT_EQ(values.size(), 7u) << ToText(values);
}


TEST(RuntimeSettingsTest, RuntimeValuesOfDefaults)
{
  const Json::Value values =
      GetRuntimeValues(ParseConfiguration(ParseJson(R"({"ServiceUrl": "https://d.example.com"})")));

  EXPECT_EQ(values["ApiVersion"], Json::Value("v2"));
  EXPECT_EQ(values["Partition"], Json::Value(""));
  EXPECT_EQ(values["Workers"], Json::Value(4));
  EXPECT_EQ(values["MaxInstancesPerRequest"], Json::Value(20));
  EXPECT_EQ(values["MaxRequestSizeMB"], Json::Value(64));
}


TEST(RuntimeSettingsTest, MakeOverridesKeepsDifferences)
{
  Json::Value values = GetRuntimeValues(ParseConfiguration(MakeFileSection()));
  values["Partition"] = "b";
  values["Workers"] = 8;

  const Json::Value overrides = MakeOverrides(MakeFileSection(), values);

  EXPECT_EQ(overrides, ParseJson(R"({"Partition": "b", "Workers": 8})")) << ToText(overrides);
}


TEST(RuntimeSettingsTest, MakeOverridesOfFileValuesIsEmpty)
{
  const Json::Value values = GetRuntimeValues(ParseConfiguration(MakeFileSection()));

  EXPECT_TRUE(MakeOverrides(MakeFileSection(), values).empty());
  EXPECT_TRUE(MakeOverrides(MakeFileSection(), ParseJson(ToText(values))).empty());
}


TEST(RuntimeSettingsTest, MakeOverridesSkipsMissingKeys)
{
  const Json::Value overrides =
      MakeOverrides(MakeFileSection(), ParseJson(R"({"ApiVersion": "v1", "Paused": true})"));

  EXPECT_EQ(overrides, ParseJson(R"({"ApiVersion": "v1"})")) << ToText(overrides);
}


TEST(RuntimeSettingsTest, MakeOverridesNestsSecretVersion)
{
  Json::Value values = GetRuntimeValues(ParseConfiguration(MakeKeyVaultSection()));
  values[SECRET_VERSION_KEY] = SECRET_VERSION;

  const Json::Value overrides = MakeOverrides(MakeKeyVaultSection(), values);

  EXPECT_EQ(overrides["Credentials"]["KeyVault"]["SecretVersion"], Json::Value(SECRET_VERSION))
      << ToText(overrides);
  EXPECT_EQ(overrides.size(), 1u) << ToText(overrides);
}


TEST(RuntimeSettingsTest, MakeOverridesDropsVersionWithoutVault)
{
  Json::Value values = GetRuntimeValues(ParseConfiguration(MakeFileSection()));
  values[SECRET_VERSION_KEY] = SECRET_VERSION;
  values["Partition"] = "b";

  const Json::Value overrides = MakeOverrides(MakeFileSection(), values);

  EXPECT_EQ(overrides, ParseJson(R"({"Partition": "b"})")) << ToText(overrides);
}


TEST(RuntimeSettingsTest, MakeOverridesRestoresUpdate)
{
  const Json::Value overrides = UpdateOverrides(
      MakeFileSection(), Json::objectValue,
      ParseJson(R"({"ServiceUrl": "https://other.example.com", "Partition": "c"})"));
  const Json::Value values =
      GetRuntimeValues(ParseConfiguration(MergeSettings(MakeFileSection(), overrides)));

  EXPECT_EQ(MakeOverrides(MakeFileSection(), ParseJson(ToText(values))), overrides);
}


TEST(RuntimeSettingsTest, DiffListsChangedKeysInOrder)
{
  const Json::Value current =
      ParseJson(R"({"Workers": 8, "Partition": "b", "ApiVersion": "v2", "Paused": true})");
  const Json::Value restored =
      ParseJson(R"({"Workers": 4, "Partition": "a", "ApiVersion": "v2", "Paused": false})");

  const Json::Value diff = DiffValues(current, restored);

  ASSERT_TRUE(diff.isArray());
  ASSERT_EQ(diff.size(), 3u) << ToText(diff);
  EXPECT_EQ(diff[0], ParseJson(R"({"Key": "Partition", "Current": "b", "Restored": "a"})"));
  EXPECT_EQ(diff[1], ParseJson(R"({"Key": "Paused", "Current": true, "Restored": false})"));
  EXPECT_EQ(diff[2], ParseJson(R"({"Key": "Workers", "Current": 8, "Restored": 4})"));
}


TEST(RuntimeSettingsTest, DiffOfEqualValuesIsEmpty)
{
  const Json::Value values = GetRuntimeValues(ParseConfiguration(MakeFileSection()));

  const Json::Value diff = DiffValues(values, ParseJson(ToText(values)));

  EXPECT_TRUE(diff.isArray());
  EXPECT_TRUE(diff.empty()) << ToText(diff);
}


TEST(RuntimeSettingsTest, DiffShowsKeyMissingNow)
{
  const Json::Value diff = DiffValues(ParseJson(R"({"Workers": 4})"),
                                      ParseJson(std::string("{\"") + SECRET_VERSION_KEY + "\": \"" +
                                                SECRET_VERSION + "\", \"Workers\": 4}"));

  ASSERT_EQ(diff.size(), 1u) << ToText(diff);
  EXPECT_EQ(diff[0]["Key"], Json::Value(SECRET_VERSION_KEY));
  EXPECT_TRUE(diff[0]["Current"].isNull());
  EXPECT_EQ(diff[0]["Restored"], Json::Value(SECRET_VERSION));
}


TEST(RuntimeSettingsTest, FlattenUsesDottedKeys)
{
  const Json::Value overrides =
      ParseJson(std::string("{\"Partition\": \"b\", \"Credentials\": {\"KeyVault\": ") +
                "{\"SecretVersion\": \"" + SECRET_VERSION + "\"}}}");

  const Json::Value flat = FlattenOverrides(overrides);

  EXPECT_EQ(flat["Partition"], Json::Value("b"));
  EXPECT_EQ(flat[SECRET_VERSION_KEY], Json::Value(SECRET_VERSION));
  EXPECT_EQ(flat.size(), 2u) << ToText(flat);
}


TEST(RuntimeSettingsTest, FlattenSkipsOtherKeys)
{
  const Json::Value flat = FlattenOverrides(MakeKeyVaultSection());

  EXPECT_EQ(flat["ServiceUrl"], Json::Value(SERVICE_URL));
  EXPECT_EQ(flat["Workers"], Json::Value(4));
  EXPECT_FALSE(flat.isMember("Retry"));
  EXPECT_FALSE(flat.isMember("Credentials"));
  EXPECT_FALSE(flat.isMember(SECRET_VERSION_KEY));
  EXPECT_EQ(flat.size(), 6u) << ToText(flat);

  EXPECT_TRUE(FlattenOverrides(Json::objectValue).empty());
  EXPECT_TRUE(FlattenOverrides(Json::nullValue).empty());
}
