#pragma once

#include "Azure/Credential.h"
#include "Azure/HttpClient.h"
#include "Sync/Configuration.h"

#include <string>

namespace AzureDicom
{
// The folder where the Azure Connected Machine agent of Linux writes the key files of its
// authentication challenges.
const char* const ARC_TOKEN_FOLDER = "/var/opt/azcmagent/tokens";


// The process environment that selects and configures a managed identity source, read once at
// start-up. Empty strings mean "not set".
struct ManagedIdentityEnvironment
{
  std::string identityEndpoint;          // IDENTITY_ENDPOINT
  std::string identityHeader;            // IDENTITY_HEADER
  std::string imdsEndpoint;              // IMDS_ENDPOINT (set with IDENTITY_ENDPOINT on Azure Arc)
  std::string podIdentityAuthorityHost;  // AZURE_POD_IDENTITY_AUTHORITY_HOST: overrides the VM
                                         // metadata endpoint's host (used by tests on loopback)
};


// Reads IDENTITY_ENDPOINT, IDENTITY_HEADER, IMDS_ENDPOINT and AZURE_POD_IDENTITY_AUTHORITY_HOST.
ManagedIdentityEnvironment ReadManagedIdentityEnvironment();


// Requests tokens from the managed identity endpoint of the host, chosen as Azure's SDK for C++
// chooses it: Azure Arc when IDENTITY_ENDPOINT and IMDS_ENDPOINT are set, App Service or Container
// Apps when IDENTITY_ENDPOINT and IDENTITY_HEADER are set, and otherwise the instance metadata
// endpoint of an Azure VM.
class ManagedIdentityCredential : public ICredential
{
public:
  // clientId selects a user-assigned identity ("" = system-assigned). arcTokenFolder is where
  // the Azure Arc agent writes its key files; production passes ARC_TOKEN_FOLDER. Throws
  // Exception(BadConfiguration) for an empty scope, an endpoint that is not an http:// or
  // https:// URL, and a clientId with Azure Arc, which has only the system-assigned identity.
  ManagedIdentityCredential(const std::string& clientId, const std::string& scope,
                            const ManagedIdentityEnvironment& environment, const TlsSettings& tls,
                            const std::string& arcTokenFolder = ARC_TOKEN_FOLDER);

  // Sends one GET, or two for the Azure Arc challenge. Throws Exception(Unauthorized) for an
  // error response or a key file that breaks a rule, Exception(NetworkError) when no response
  // came, and Exception(ProtocolError) for a response without a token. Messages start with
  // "ManagedIdentity credential (<source>): " and never contain the key or IDENTITY_HEADER.
  AccessToken RequestToken() override;

  std::string GetType() const override
  {
    return "ManagedIdentity";
  }

  // The client ID, or "system-assigned".
  std::string GetPrincipal() const override;

  // "AzureArc", "AppService" (also Container Apps), or "VirtualMachine".
  std::string GetSource() const;

  // The URL tokens are requested from, without the query.
  std::string GetEndpoint() const
  {
    return endpoint_;
  }

private:
  enum class Source
  {
    AzureArc,
    AppService,
    VirtualMachine
  };

  HttpRequest MakeRequest() const;
  AccessToken RequestArcToken();
  std::string ReadArcKey(const HttpResponse& challenge) const;
  std::string GetName() const;

  Source source_;
  std::string clientId_;
  std::string resource_;  // the scope without "/.default", as managed identity endpoints expect
  std::string endpoint_;
  std::string identityHeader_;
  std::string arcTokenFolder_;
  TlsSettings tls_;
};
}  // namespace AzureDicom
