#include "Common/Json.h"

#include <json/json.h>

#include <memory>
#include <string>

namespace AzureDicom
{
std::string WriteJson(const Json::Value& value)
{
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "  ";
  return Json::writeString(builder, value);
}


bool ParseJson(Json::Value& value, std::string& error, const char* data, size_t size)
{
  Json::CharReaderBuilder builder;
  builder["collectComments"] = false;
  builder["allowComments"] = false;
  builder["allowTrailingCommas"] = false;
  builder["failIfExtra"] = true;
  builder["rejectDupKeys"] = true;
  builder["stackLimit"] = MAX_JSON_NESTING;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  try
  {
    return reader->parse(data, data + size, &value, &error);
  }
  catch (const Json::Exception&)  // JsonCpp throws when the nesting exceeds stackLimit
  {
    error = "the JSON nests more than " + std::to_string(MAX_JSON_NESTING) +
            " arrays or objects deep";
    return false;
  }
}


bool ParseJson(const std::string& text, Json::Value& value)
{
  std::string error;
  return ParseJson(value, error, text.data(), text.size());
}


bool ReadBoolean(const Json::Value& value, bool& result)
{
  if (value.isBool())
  {
    result = value.asBool();
    return true;
  }
  if (value.isString() && (value.asString() == "true" || value.asString() == "false"))
  {
    result = (value.asString() == "true");
    return true;
  }
  return false;
}
}  // namespace AzureDicom
