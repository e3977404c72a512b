#include "Common/Json.h"

#include <json/json.h>

#include <memory>

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
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  return reader->parse(data, data + size, &value, &error);
}


bool ParseJson(const std::string& text, Json::Value& value)
{
  std::string error;
  return ParseJson(value, error, text.data(), text.size());
}
}  // namespace AzureDicom
