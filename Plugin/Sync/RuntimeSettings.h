#pragma once

#include "Sync/Configuration.h"

#include <json/value.h>

#include <string>
#include <vector>

namespace AzureDicom
{
// The settings that PUT /azure-dicom/settings changes without restarting Orthanc, as dotted keys
// of the "AzureDicom" section ("Credentials.KeyVault.SecretVersion"). "Paused" is one too, but
// the plugin context keeps it apart from the configuration.
const std::vector<std::string>& GetRuntimeKeys();

// Returns the file's section with the overrides (a subset of the section, with the same nesting)
// applied over it.
Json::Value MergeSettings(const Json::Value& fileSection, const Json::Value& overrides);

// Applies the body of PUT /azure-dicom/settings to the current overrides and returns the new
// ones, holding only the values that differ from the file's. A null value returns a key to the
// file's value, and "Paused" is ignored here. Throws Exception(BadRequest) naming the key for a
// key that cannot change at run time, and for a value that the configuration file would reject
// (with the same message). The result parses with ParseConfiguration().
Json::Value UpdateOverrides(const Json::Value& fileSection, const Json::Value& overrides,
                            const Json::Value& body);

// Returns the runtime values of a configuration as {dotted key: value}, without "Paused".
Json::Value GetRuntimeValues(const Configuration& configuration);

// Returns the overrides that bring the file's section to these runtime values, for restoring a
// snapshot. Keys that the file's section cannot take (a SecretVersion without Key Vault) are
// left out.
Json::Value MakeOverrides(const Json::Value& fileSection, const Json::Value& values);

// Returns [{"Key", "Current", "Restored"}] for each key whose value differs, in key order.
Json::Value DiffValues(const Json::Value& current, const Json::Value& restored);

// Returns the overrides as {dotted key: value}, for GET /azure-dicom/settings.
Json::Value FlattenOverrides(const Json::Value& overrides);
}  // namespace AzureDicom
