#pragma once

// Helpers that several test files share.

#include "Common/Buffer.h"
#include "Common/Exception.h"

#include <gtest/gtest.h>
#include <json/json.h>

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace AzureDicom
{
namespace Testing
{
// Runs the call and returns the AzureDicom::Exception that it throws. Fails the test when it
// throws nothing.
inline Exception CatchException(const std::function<void()>& call)
{
  try
  {
    call();
  }
  catch (const Exception& e)
  {
    return e;
  }

  ADD_FAILURE() << "expected an AzureDicom::Exception";
  return Exception(ErrorCode::InternalError, "no exception");
}


// Parses JSON that a test wrote; throws std::runtime_error for invalid JSON.
inline Json::Value ParseJson(const std::string& text)
{
  Json::CharReaderBuilder builder;
  Json::Value value;
  std::string errors;
  std::istringstream stream(text);
  if (!Json::parseFromStream(builder, stream, &value, &errors))
  {
    throw std::runtime_error("invalid JSON in a test: " + errors + " in " + text);
  }
  return value;
}


// Writes JSON on one line, for messages and comparisons.
inline std::string ToText(const Json::Value& value)
{
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  return Json::writeString(builder, value);
}


// A buffer that counts its live instances in liveCount, so that a test can check how long the
// code under test keeps it.
class CountedBuffer final : public IBuffer
{
public:
  CountedBuffer(std::string data, int& liveCount) : data_(std::move(data)), liveCount_(liveCount)
  {
    liveCount_++;
  }

  ~CountedBuffer() override
  {
    liveCount_--;
  }

  const char* GetData() const override
  {
    return data_.data();
  }

  size_t GetSize() const override
  {
    return data_.size();
  }

private:
  std::string data_;
  int& liveCount_;
};
}  // namespace Testing
}  // namespace AzureDicom
