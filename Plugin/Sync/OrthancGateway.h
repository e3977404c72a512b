#pragma once

#include <json/value.h>

#include <string>

namespace AzureDicom
{
// Read access to Orthanc's REST API, so that the engine runs without an Orthanc in unit tests.
// Both methods return false when the resource does not exist (HTTP 404, for example an instance
// deleted meanwhile) and throw Exception for any other failure, naming the URI.
class IOrthancGateway
{
public:
  virtual ~IOrthancGateway() = default;

  virtual bool GetJson(Json::Value& answer, const std::string& uri) = 0;

  virtual bool GetBinary(std::string& answer, const std::string& uri) = 0;
};
}  // namespace AzureDicom
