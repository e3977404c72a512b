#pragma once

#include <json/value.h>

#include <cstddef>
#include <string>

namespace AzureDicom
{
// Writes JSON indented by two spaces, as Orthanc's REST API does.
std::string WriteJson(const Json::Value& value);

// Parses a JSON text, rejecting duplicate keys and trailing text; returns false with a message
// when it is not valid JSON.
bool ParseJson(Json::Value& value, std::string& error, const char* data, size_t size);

// Parses a JSON text as ParseJson() does; returns false when it is not valid JSON.
bool ParseJson(const std::string& text, Json::Value& value);
}  // namespace AzureDicom
