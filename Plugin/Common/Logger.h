#pragma once

#include <string>

namespace AzureDicom
{
// Where the engine writes its log lines. The plugin forwards them to Orthanc's log with the
// "AzureDicom: " prefix; the unit tests collect them. Messages never contain a secret.
class ILogger
{
public:
  virtual ~ILogger() = default;

  virtual void Info(const std::string& message) = 0;
  virtual void Warning(const std::string& message) = 0;
  virtual void Error(const std::string& message) = 0;
};
}  // namespace AzureDicom
