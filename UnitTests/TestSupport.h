#pragma once

// Helpers that several test files share.

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
}  // namespace Testing
}  // namespace AzureDicom
