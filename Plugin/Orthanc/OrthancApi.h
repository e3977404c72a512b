#pragma once

// The thin layer over Orthanc's C plugin API (Debian's orthanc-dev ships no C++ wrapper). Only
// the files of Plugin/Orthanc include the SDK header.

#include "Common/Json.h"
#include "Common/Logger.h"
#include "Sync/OrthancGateway.h"

#include <json/value.h>
#include <orthanc/OrthancCPlugin.h>

#include <string>

namespace AzureDicom
{
// Writes to Orthanc's log, each line prefixed with "AzureDicom: ".
class OrthancLogger : public ILogger
{
public:
  explicit OrthancLogger(OrthancPluginContext* context) : context_(context)
  {
  }

  void Info(const std::string& message) override;
  void Warning(const std::string& message) override;
  void Error(const std::string& message) override;

private:
  OrthancPluginContext* context_;
};


// Calls Orthanc's own REST API from the plugin's threads. Never call it from inside an Orthanc
// callback (storage, change): Orthanc runs those synchronously and the call can deadlock.
class OrthancGateway : public IOrthancGateway
{
public:
  explicit OrthancGateway(OrthancPluginContext* context) : context_(context)
  {
  }

  bool GetJson(Json::Value& answer, const std::string& uri) override;
  bool GetBinary(std::string& answer, const std::string& uri) override;
  bool ReadBinary(const std::string& uri,
                  const std::function<void(const char* data, size_t size)>& consumer) override;

  // Keeps Orthanc's own buffer: the file is in memory once.
  std::unique_ptr<IBuffer> ReadBuffer(const std::string& uri) override;

  // POST to Orthanc's REST API; returns false on 404. Throws on other failures.
  bool PostJson(Json::Value& answer, const std::string& uri, const std::string& body);

private:
  OrthancPluginContext* context_;
};


// Orthanc's whole configuration, as the JSON object Orthanc parsed.
Json::Value ReadOrthancConfiguration(OrthancPluginContext* context);

// The directory that relative paths of the configuration are resolved against: the folder of the
// configuration file (or the configuration folder itself).
std::string GetConfigurationDirectory(OrthancPluginContext* context);


// Sends the response to a REST request: a JSON body and the given HTTP status.
void AnswerJson(OrthancPluginContext* context, OrthancPluginRestOutput* output,
                const Json::Value& value, uint16_t status = 200);

// Sends an error response to a REST request: {"Message": message} and the given 4xx or 5xx HTTP status.
void AnswerError(OrthancPluginContext* context, OrthancPluginRestOutput* output, uint16_t status,
                 const std::string& message);
}  // namespace AzureDicom
