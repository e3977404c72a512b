#pragma once

#include <json/value.h>

#include <cstddef>
#include <string>

namespace AzureDicom
{
// Writes JSON indented by two spaces, as Orthanc's REST API does.
std::string WriteJson(const Json::Value& value);

// The deepest nesting of arrays and objects that ParseJson() accepts. JsonCpp parses each level
// in a recursive call, and about 250 levels overflowed the stack of an Orthanc 1.10 HTTP thread,
// which ended Orthanc. The request bodies, responses and configurations that the plugin reads
// usually nest fewer than 10 levels deep.
constexpr int MAX_JSON_NESTING = 64;

// Parses a JSON text, rejecting duplicate keys, trailing text and a nesting deeper than
// MAX_JSON_NESTING; returns false with a message when it is not valid JSON.
bool ParseJson(Json::Value& value, std::string& error, const char* data, size_t size);

// Parses a JSON text as ParseJson() does; returns false when it is not valid JSON.
bool ParseJson(const std::string& text, Json::Value& value);

// Reads true or false, also written as the string "true" or "false", which Orthanc's
// ${VARIABLE} substitution in the configuration produces. Returns false, leaving result as it
// is, for any other value.
bool ReadBoolean(const Json::Value& value, bool& result);
}  // namespace AzureDicom
