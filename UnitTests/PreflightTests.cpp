#include "Azure/Preflight.h"

#include <gtest/gtest.h>

#include <string>

using namespace AzureDicom;

namespace
{
bool Contains(const std::string& text, const std::string& part)
{
  return text.find(part) != std::string::npos;
}
}  // namespace


TEST(PreflightHintTest, HostNameMismatch)
{
  const std::string hint = GetCredentialHint(
      "GET https://localhost:9443/v2/studies?limit=1: SSL: no alternative certificate subject "
      "name matches target host name 'localhost' (60)");

  EXPECT_TRUE(Contains(hint, "another host name")) << hint;
  EXPECT_FALSE(Contains(hint, "Tls.CaCertificates")) << hint;
}


TEST(PreflightHintTest, UntrustedCertificate)
{
  const std::string hint = GetCredentialHint(
      "GET https://dicom.example/v2/studies?limit=1: SSL certificate problem: self-signed "
      "certificate in certificate chain (60)");

  EXPECT_TRUE(Contains(hint, "Tls.CaCertificates")) << hint;
}


TEST(PreflightHintTest, NoInstanceMetadataEndpoint)
{
  const std::string hint = GetCredentialHint(
      "ManagedIdentity credential (VirtualMachine): GET http://169.254.169.254/metadata/identity/"
      "oauth2/token?api-version=2018-02-01: Failed to connect to 169.254.169.254 port 80 after "
      "0 ms: Couldn't connect to server (7)");

  EXPECT_TRUE(Contains(hint, "not an Azure VM")) << hint;
  EXPECT_TRUE(Contains(hint, "IDENTITY_ENDPOINT")) << hint;
}


TEST(PreflightHintTest, UnreachableEndpoint)
{
  const std::string hint = GetCredentialHint(
      "POST https://login.example/token: Could not resolve host: login.example (6)");

  EXPECT_TRUE(Contains(hint, "cannot be reached")) << hint;
}
