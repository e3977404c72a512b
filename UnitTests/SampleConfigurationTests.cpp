// The sample configurations of Resources/Configuration/ are Orthanc configuration fragments that
// users copy. Each must parse, and must select the credential type that its file name names.

#include "Common/Exception.h"
#include "Sync/Configuration.h"

#include <gtest/gtest.h>
#include <json/reader.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#ifndef AZURE_DICOM_SOURCE_DIR
#error "AZURE_DICOM_SOURCE_DIR must be the repository's folder (set by UnitTests/CMakeLists.txt)"
#endif

using namespace AzureDicom;

namespace
{
const char* const kSampleFolder = "Resources/Configuration";
const char* const kSectionName = "AzureDicom";

// The CertificatePath of client-certificate.json. The parser opens the file, so the tests put
// the path of a file that they create in its place.
const char* const kCertificatePlaceholder = "/etc/orthanc/azure-dicom-client.pem";
const char* const kPemCertificate =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXz\n-----END CERTIFICATE-----\n";

struct Sample
{
  const char* fileName;
  CredentialType type;
  bool hasKeyVault;
  bool hasClientId;
};

const std::vector<Sample> kSamples = {
    {"none-dicomweb.json", CredentialType::None, false, false},
    {"client-secret.json", CredentialType::ClientSecret, false, true},
    {"client-secret-key-vault.json", CredentialType::ClientSecret, true, true},
    {"client-certificate.json", CredentialType::ClientCertificate, false, true},
    {"client-certificate-key-vault.json", CredentialType::ClientCertificate, true, true},
    {"managed-identity.json", CredentialType::ManagedIdentity, false, false},
    {"managed-identity-user-assigned.json", CredentialType::ManagedIdentity, false, true},
    {"workload-identity.json", CredentialType::WorkloadIdentity, false, false},
};


std::filesystem::path GetSampleFolder()
{
  return std::filesystem::path(AZURE_DICOM_SOURCE_DIR) / kSampleFolder;
}


// Parses in JsonCpp's strict mode (no comments, no duplicate keys, nothing after the object), so
// that the samples are plain JSON for every tool that reads them.
Json::Value ReadJsonFile(const std::filesystem::path& path)
{
  std::ifstream stream(path);
  if (!stream)
  {
    throw std::runtime_error("cannot open the sample " + path.string());
  }

  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);
  Json::Value value;
  std::string errors;
  if (!Json::parseFromStream(builder, stream, &value, &errors))
  {
    throw std::runtime_error("invalid JSON in the sample " + path.string() + ": " + errors);
  }
  return value;
}


class SampleConfigurationTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "sample-configuration-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;

    certificatePath_ = (directory_ / "client.pem").string();
    std::ofstream certificate(certificatePath_);
    certificate << kPemCertificate;
    ASSERT_TRUE(certificate.good());
  }

  void TearDown() override
  {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  // Returns the sample's AzureDicom section, with the certificate placeholder replaced by the
  // path of a file that exists.
  Json::Value ReadSection(const char* fileName) const
  {
    Json::Value section = ReadJsonFile(GetSampleFolder() / fileName)[kSectionName];
    Json::Value& credentials = section["Credentials"];
    if (credentials.isMember("CertificatePath") &&
        credentials["CertificatePath"].asString() == kCertificatePlaceholder)
    {
      credentials["CertificatePath"] = certificatePath_;
    }
    return section;
  }

  std::filesystem::path directory_;
  std::string certificatePath_;
};
}  // namespace


TEST_F(SampleConfigurationTest, EveryFileListed)
{
  std::set<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(GetSampleFolder()))
  {
    if (entry.path().extension() == ".json")
    {
      found.insert(entry.path().filename().string());
    }
  }

  std::set<std::string> listed;
  for (const Sample& sample : kSamples)
  {
    listed.insert(sample.fileName);
  }

  EXPECT_EQ(found, listed);
}


TEST_F(SampleConfigurationTest, OnlyAzureDicomSection)
{
  // A fragment with other top-level keys could not go next to Debian's /etc/orthanc/*.json,
  // because Orthanc rejects a key that two files of its configuration folder define.
  for (const Sample& sample : kSamples)
  {
    SCOPED_TRACE(sample.fileName);
    const Json::Value fragment = ReadJsonFile(GetSampleFolder() / sample.fileName);

    ASSERT_TRUE(fragment.isObject());
    EXPECT_EQ(fragment.getMemberNames(), std::vector<std::string>{kSectionName});
  }
}


TEST_F(SampleConfigurationTest, ParsesWithNamedType)
{
  for (const Sample& sample : kSamples)
  {
    SCOPED_TRACE(sample.fileName);
    Configuration configuration;
    ASSERT_NO_THROW(configuration = ParseConfiguration(ReadSection(sample.fileName)));

    EXPECT_TRUE(configuration.enable);
    EXPECT_STREQ(ToString(configuration.credentials.type), ToString(sample.type));
    EXPECT_EQ(configuration.credentials.keyVault != nullptr, sample.hasKeyVault);
    EXPECT_EQ(!configuration.credentials.clientId.empty(), sample.hasClientId);
  }
}


TEST_F(SampleConfigurationTest, KeyVaultReadWithManagedIdentity)
{
  for (const Sample& sample : kSamples)
  {
    if (!sample.hasKeyVault)
    {
      continue;
    }

    SCOPED_TRACE(sample.fileName);
    const Configuration configuration = ParseConfiguration(ReadSection(sample.fileName));
    const KeyVaultSettings& keyVault = *configuration.credentials.keyVault;

    EXPECT_FALSE(keyVault.secretName.empty());
    ASSERT_NE(keyVault.credentials, nullptr);
    EXPECT_EQ(keyVault.credentials->type, CredentialType::ManagedIdentity);
  }
}


TEST_F(SampleConfigurationTest, ClientSecretFromVariable)
{
  // Orthanc replaces ${AZURE_DICOM_CLIENT_SECRET} before the plugin reads the section, so that
  // the secret is never in the file.
  const Configuration configuration = ParseConfiguration(ReadSection("client-secret.json"));

  EXPECT_EQ(configuration.credentials.clientSecret, "${AZURE_DICOM_CLIENT_SECRET}");
}


TEST_F(SampleConfigurationTest, DicomWebWithoutVersion)
{
  const Configuration configuration = ParseConfiguration(ReadSection("none-dicomweb.json"));

  EXPECT_EQ(configuration.apiVersion, "");
  EXPECT_EQ(configuration.GetStowUrl(), "http://localhost:8043/dicom-web/studies");
}


TEST_F(SampleConfigurationTest, CertificatePlaceholderMissing)
{
  // Without the replacement the parser must reject the placeholder path, which shows that the
  // other tests really depend on the file they create.
  ASSERT_FALSE(std::filesystem::exists(kCertificatePlaceholder));
  const Json::Value section =
      ReadJsonFile(GetSampleFolder() / "client-certificate.json")[kSectionName];

  try
  {
    ParseConfiguration(section);
    FAIL() << "the placeholder certificate path was accepted";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(e.GetCode(), ErrorCode::BadConfiguration);
    EXPECT_NE(std::string(e.what()).find("AzureDicom.Credentials.CertificatePath"),
              std::string::npos)
        << e.what();
  }
}
