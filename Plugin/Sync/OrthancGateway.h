#pragma once

#include "Common/Buffer.h"

#include <json/value.h>

#include <functional>
#include <memory>
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

  // Passes the body of a GET to consumer without keeping a copy of it, so that a large DICOM
  // file is in memory once less. The bytes are valid only during the call.
  virtual bool ReadBinary(const std::string& uri,
                          const std::function<void(const char* data, size_t size)>& consumer)
  {
    std::string answer;
    if (!GetBinary(answer, uri))
    {
      return false;
    }
    consumer(answer.data(), answer.size());
    return true;
  }

  // Returns the body of a GET in a buffer that the caller keeps, without a copy where the
  // gateway allows it, or null when the resource does not exist.
  virtual std::unique_ptr<IBuffer> ReadBuffer(const std::string& uri)
  {
    std::string answer;
    if (!GetBinary(answer, uri))
    {
      return nullptr;
    }
    return std::make_unique<StringBuffer>(std::move(answer));
  }
};
}  // namespace AzureDicom
