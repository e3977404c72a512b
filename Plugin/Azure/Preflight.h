#pragma once

#include "Azure/CredentialManager.h"
#include "Sync/Configuration.h"

#include <json/value.h>

namespace AzureDicom
{
// Runs the checks an administrator runs first, each step with what it saw and, when it fails,
// a hint at the usual causes: the principal, the secret's source, Key Vault, a token, and a
// QIDO-RS search on the service. Returns {"Passed": bool, "Steps": [{"Name", "Status"
// ("Passed", "Failed", "Skipped" or "Info"), "Details", "Hint"}]}.
Json::Value RunPreflight(const Configuration& configuration, CredentialManager& credentials,
                         int64_t now);

// The hint for an Entra or Key Vault error message ("" when none applies).
std::string GetCredentialHint(const std::string& message);
}  // namespace AzureDicom
