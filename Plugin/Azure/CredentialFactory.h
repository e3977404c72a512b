#pragma once

#include "Azure/Credential.h"
#include "Sync/Configuration.h"

#include <memory>

namespace AzureDicom
{
// Creates the credential of the settings, or returns null for the type None. Throws
// Exception(BadConfiguration) naming AzureDicom.Credentials.Type for a type that this build
// cannot create.
std::unique_ptr<ICredential> CreateCredential(const CredentialSettings& settings,
                                              const TlsSettings& tls);
}  // namespace AzureDicom
