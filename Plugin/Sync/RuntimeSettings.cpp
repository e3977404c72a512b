#include "Sync/RuntimeSettings.h"

#include "Common/Exception.h"

namespace AzureDicom
{
namespace
{
const char* const SECRET_VERSION_KEY = "Credentials.KeyVault.SecretVersion";


std::vector<std::string> SplitKey(const std::string& dottedKey)
{
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;)
  {
    const size_t dot = dottedKey.find('.', start);
    parts.push_back(dottedKey.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos)
    {
      return parts;
    }
    start = dot + 1;
  }
}


const Json::Value* FindPath(const Json::Value& root, const std::string& dottedKey)
{
  const Json::Value* node = &root;
  for (const std::string& part : SplitKey(dottedKey))
  {
    if (!node->isObject() || !node->isMember(part))
    {
      return nullptr;
    }
    node = &(*node)[part];
  }
  return node;
}


void SetPath(Json::Value& root, const std::string& dottedKey, const Json::Value& value)
{
  Json::Value* node = &root;
  for (const std::string& part : SplitKey(dottedKey))
  {
    if (!node->isObject())
    {
      *node = Json::Value(Json::objectValue);
    }
    node = &(*node)[part];
  }
  *node = value;
}


void MergeInto(Json::Value& target, const Json::Value& overrides)
{
  for (const std::string& name : overrides.getMemberNames())
  {
    const Json::Value& value = overrides[name];
    if (value.isObject() && target.isMember(name) && target[name].isObject())
    {
      MergeInto(target[name], value);
    }
    else
    {
      target[name] = value;
    }
  }
}


bool IsRuntimeKey(const std::string& dottedKey)
{
  for (const std::string& key : GetRuntimeKeys())
  {
    if (key == dottedKey)
    {
      return true;
    }
  }
  return false;
}


std::string ListRuntimeKeys()
{
  std::string list;
  for (const std::string& key : GetRuntimeKeys())
  {
    list += (list.empty() ? "" : ", ") + key;
  }
  return list + ", Paused";
}


// Collects the dotted keys of the body's leaves, where an object that is not one of the nested
// runtime keys' parents counts as a leaf. A member name that contains a dot is rejected, because
// its dotted key would name a path that does not exist in the body.
void CollectLeaves(std::vector<std::string>& keys, const Json::Value& body,
                   const std::string& prefix)
{
  for (const std::string& name : body.getMemberNames())
  {
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (name.find('.') != std::string::npos)
    {
      throw Exception(ErrorCode::BadRequest,
                      "AzureDicom." + key +
                          ": invalid key, because a key name cannot contain '.'. Nest the "
                          "object instead, as in {\"Credentials\": {\"KeyVault\": "
                          "{\"SecretVersion\": \"...\"}}}. The keys that can change are " +
                          ListRuntimeKeys());
    }

    const bool isParent =
        std::string(SECRET_VERSION_KEY).compare(0, key.size() + 1, key + ".") == 0;
    if (isParent && body[name].isObject())
    {
      CollectLeaves(keys, body[name], key);
    }
    else
    {
      keys.push_back(key);
    }
  }
}
}  // namespace


const std::vector<std::string>& GetRuntimeKeys()
{
  static const std::vector<std::string> keys = {
      "ServiceUrl",       "ApiVersion",      "Partition", "Workers", "MaxInstancesPerRequest",
      "MaxRequestSizeMB", SECRET_VERSION_KEY};
  return keys;
}


Json::Value MergeSettings(const Json::Value& fileSection, const Json::Value& overrides)
{
  Json::Value merged = fileSection.isObject() ? fileSection : Json::Value(Json::objectValue);
  if (overrides.isObject())
  {
    MergeInto(merged, overrides);
  }
  return merged;
}


Json::Value UpdateOverrides(const Json::Value& fileSection, const Json::Value& overrides,
                            const Json::Value& body)
{
  std::vector<std::string> keys;
  CollectLeaves(keys, body, "");

  Json::Value next = overrides.isObject() ? overrides : Json::Value(Json::objectValue);
  Json::Value flat = FlattenOverrides(next);
  for (const std::string& key : keys)
  {
    if (key == "Paused")
    {
      continue;
    }

    if (!IsRuntimeKey(key))
    {
      throw Exception(ErrorCode::BadRequest,
                      "AzureDicom." + key +
                          " cannot be changed at run time: set it in Orthanc's configuration "
                          "file and restart Orthanc. The keys that can change are " +
                          ListRuntimeKeys());
    }

    if (key == SECRET_VERSION_KEY && FindPath(fileSection, "Credentials.KeyVault") == nullptr)
    {
      throw Exception(ErrorCode::BadRequest,
                      "AzureDicom." + key +
                          ": no Key Vault is configured (AzureDicom.Credentials.KeyVault), so "
                          "there is no secret version to pin");
    }

    const Json::Value* value = FindPath(body, key);
    if (value->isNull())
    {
      flat.removeMember(key);
    }
    else
    {
      flat[key] = *value;
    }
  }

  Json::Value nested(Json::objectValue);
  for (const std::string& key : flat.getMemberNames())
  {
    SetPath(nested, key, flat[key]);
  }

  Configuration parsed;
  try
  {
    parsed = ParseConfiguration(MergeSettings(fileSection, nested));
  }
  catch (const Exception& e)
  {
    throw Exception(ErrorCode::BadRequest, std::string(e.what()) + " (nothing was changed)");
  }

  // Keeps the normalized parsed values, and only those that differ from the file, so that a
  // later change of the file applies to the keys not overridden.
  return MakeOverrides(fileSection, GetRuntimeValues(parsed));
}


Json::Value GetRuntimeValues(const Configuration& configuration)
{
  Json::Value values(Json::objectValue);
  values["ServiceUrl"] = configuration.serviceUrl;
  values["ApiVersion"] = configuration.apiVersion;
  values["Partition"] = configuration.partition;
  // Signed integers, because JsonCpp parses small numbers from text as signed and the ==
  // operator of Json::Value also compares the type.
  values["Workers"] = static_cast<Json::Int>(configuration.workers);
  values["MaxInstancesPerRequest"] = static_cast<Json::Int>(configuration.maxInstancesPerRequest);
  values["MaxRequestSizeMB"] = static_cast<Json::Int>(configuration.maxRequestSizeMB);
  if (configuration.credentials.keyVault)
  {
    values[SECRET_VERSION_KEY] = configuration.credentials.keyVault->secretVersion;
  }
  return values;
}


Json::Value MakeOverrides(const Json::Value& fileSection, const Json::Value& values)
{
  const Json::Value fileValues = GetRuntimeValues(ParseConfiguration(fileSection));

  Json::Value overrides(Json::objectValue);
  for (const std::string& key : GetRuntimeKeys())
  {
    if (values.isMember(key) && fileValues.isMember(key) && values[key] != fileValues[key])
    {
      SetPath(overrides, key, values[key]);
    }
  }
  return overrides;
}


Json::Value DiffValues(const Json::Value& current, const Json::Value& restored)
{
  Json::Value diff(Json::arrayValue);
  for (const std::string& key : restored.getMemberNames())
  {
    const Json::Value now = current.isMember(key) ? current[key] : Json::Value(Json::nullValue);
    if (now != restored[key])
    {
      Json::Value entry;
      entry["Key"] = key;
      entry["Current"] = now;
      entry["Restored"] = restored[key];
      diff.append(entry);
    }
  }
  return diff;
}


Json::Value FlattenOverrides(const Json::Value& overrides)
{
  Json::Value flat(Json::objectValue);
  for (const std::string& key : GetRuntimeKeys())
  {
    const Json::Value* value = FindPath(overrides, key);
    if (value != nullptr)
    {
      flat[key] = *value;
    }
  }
  return flat;
}
}  // namespace AzureDicom
