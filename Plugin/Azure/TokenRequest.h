#pragma once

#include "Azure/Credential.h"
#include "Azure/HttpClient.h"

#include <cstdint>
#include <string>
#include <vector>

namespace AzureDicom
{
// Returns {authorityHost}/{tenantId}/oauth2/v2.0/token, the token endpoint of Entra ID, without
// a doubled slash when authorityHost ends with one. The tenant ID is percent-encoded.
std::string GetEntraTokenUrl(const std::string& authorityHost, const std::string& tenantId);

// Throws Exception(BadConfiguration) "{credentialType} credential: Credentials.{key} is empty;
// expected {expected}" when value is empty.
void RequireCredentialSetting(const std::string& credentialType, const std::string& value,
                              const char* key, const char* expected);

// Posts an application/x-www-form-urlencoded token request to tokenUrl and returns the token of
// the response, parsed by ParseTokenResponse. secrets are the values of the form that no
// message may contain, such as a client secret or a client assertion. The error response is
// redacted before it is parsed, and the message again after. Throws Exception(NetworkError)
// prefixed with
// "{credentialType} credential: " when no response came, and what ParseTokenResponse throws.
AccessToken PostTokenRequest(const std::string& tokenUrl, const std::string& formBody,
                             const std::vector<std::string>& secrets,
                             const std::string& credentialType, const TlsSettings& tls);

// Sends a token request of any method (the GET of a managed identity endpoint, for example) and
// parses its response like PostTokenRequest. Messages name the URL without its query, and
// start with "{credentialType} credential ({source}): ", or without " ({source})" when source
// is empty.
AccessToken SendTokenRequest(const HttpRequest& request, const std::vector<std::string>& secrets,
                             const std::string& credentialType, const std::string& source,
                             const TlsSettings& tls);

// Reads the response of an Entra or managed identity token endpoint: access_token, expires_in
// (or expires_on, in seconds since the epoch or in App Service's "M/D/YYYY h:mm:ss AM +00:00").
// Throws Exception(Unauthorized) with error, error_description and the AADSTS code of an error
// response, naming the endpoint, the credential type and the source when it is not empty. now
// is in milliseconds.
AccessToken ParseTokenResponse(const HttpResponse& response, const std::string& endpoint,
                               const std::string& credentialType, int64_t now,
                               const std::string& source = std::string());
}  // namespace AzureDicom
