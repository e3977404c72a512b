#pragma once

#include "Azure/Credential.h"
#include "Azure/HttpClient.h"
#include "Common/Logger.h"

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace AzureDicom
{
// A certificate with its private key: PEM text (certificate and key, in any order) or PKCS#12
// bytes, as read from a file or from Key Vault.
struct CertificateSource
{
  std::string data;
  bool pkcs12 = false;
  std::string password;  // of the PKCS#12 file or of an encrypted PEM key, or empty
};


// Reads a PEM or PKCS#12 file, detected by its content: "-----BEGIN" means PEM. The file is
// also decoded, so that a wrong password, a missing key or a key that does not match the
// certificate is reported here. Throws Exception(BadConfiguration) naming
// AzureDicom.Credentials.CertificatePath, the path and what is wrong.
CertificateSource ReadCertificateFile(const std::string& path, const std::string& password);


// The OAuth 2.0 client credentials grant against {AuthorityHost}/{TenantId}/oauth2/v2.0/token,
// authenticated by a client assertion (RFC 7523) that the certificate's private key signs.
class ClientCertificateCredential : public ICredential
{
public:
  // getCertificate is called for each token request, so a certificate from Key Vault can
  // change between two requests (rotation). When logger is not null, it receives a warning when
  // the certificate is expired, not yet valid or expires within 30 days, once per certificate
  // and state. The logger must outlive the credential.
  ClientCertificateCredential(const std::string& authorityHost, const std::string& tenantId,
                              const std::string& clientId, const std::string& scope,
                              std::function<CertificateSource()> getCertificate,
                              const TlsSettings& tls, ILogger* logger = nullptr);

  // Throws Exception(Unauthorized) for a certificate that cannot be used (wrong password, no
  // private key, a key that does not match) and for an error response of Entra ID, and
  // Exception(NetworkError) when no response came. A message never contains the password, the
  // key or the assertion.
  AccessToken RequestToken() override;

  std::string GetType() const override
  {
    return "ClientCertificate";
  }

  // The client ID.
  std::string GetPrincipal() const override
  {
    return clientId_;
  }

  // The SHA-1 thumbprint (hex, upper case) of the certificate last used, "" before the first.
  std::string GetThumbprint() const;

private:
  void WarnAboutValidity(const std::string& thumbprint, const std::string& problem);

  std::string tokenUrl_;
  std::string clientId_;
  std::string scope_;
  std::function<CertificateSource()> getCertificate_;
  TlsSettings tls_;
  ILogger* logger_;
  mutable std::mutex mutex_;  // protects the members below
  std::string thumbprint_;
  std::string lastWarning_;  // repeated requests with the same certificate warn once
};


// Builds the signed client assertion: a JWT with the header {"alg":"RS256","typ":"JWT",
// "x5t":base64url(SHA-1 of the DER certificate),"x5t#S256":base64url(SHA-256 of it)} and the
// claims aud=audience, iss=sub=clientId, jti=a random UUID, nbf=iat=nowSeconds and
// exp=nowSeconds+600. Only RSA keys are accepted. Throws Exception(Unauthorized) for a
// certificate that cannot be decoded or used, without the password or the key in the message.
std::string CreateClientAssertion(const CertificateSource& certificate, const std::string& clientId,
                                  const std::string& audience, int64_t nowSeconds);
}  // namespace AzureDicom
