#include "Orthanc/OrthancApi.h"

#include "Common/Exception.h"
#include "Common/ThreadPriority.h"

#include <json/json.h>

#include <memory>

namespace AzureDicom
{
namespace
{
const char* const LOG_PREFIX = "AzureDicom: ";

// Owns a buffer that Orthanc allocated and frees it in its destructor.
class MemoryBuffer
{
public:
  explicit MemoryBuffer(OrthancPluginContext* context) : context_(context)
  {
    buffer_.data = nullptr;
    buffer_.size = 0;
  }

  ~MemoryBuffer()
  {
    if (buffer_.data != nullptr)
    {
      OrthancPluginFreeMemoryBuffer(context_, &buffer_);
    }
  }

  OrthancPluginMemoryBuffer* Get()
  {
    return &buffer_;
  }

  const char* GetData() const
  {
    return static_cast<const char*>(buffer_.data);
  }

  size_t GetSize() const
  {
    return buffer_.size;
  }

private:
  OrthancPluginContext* context_;
  OrthancPluginMemoryBuffer buffer_;
};


bool CheckRestCall(OrthancPluginContext* context, OrthancPluginErrorCode code,
                   const std::string& method, const std::string& uri)
{
  if (code == OrthancPluginErrorCode_Success)
  {
    return true;
  }

  if (code == OrthancPluginErrorCode_UnknownResource || code == OrthancPluginErrorCode_InexistentItem)
  {
    return false;
  }

  throw Exception(ErrorCode::InternalError, "Orthanc's REST API failed on " + method + " " + uri +
                                                ": " + OrthancPluginGetErrorDescription(context, code));
}


// Runs GET uri in Orthanc's REST API at Orthanc's priority (OrthancCallPriority). Returns false
// when the resource does not exist, and throws for any other failure.
bool RestApiGet(OrthancPluginContext* context, OrthancPluginMemoryBuffer* answer,
                const std::string& uri)
{
  const OrthancCallPriority priority;
  return CheckRestCall(context, OrthancPluginRestApiGet(context, answer, uri.c_str()), "GET", uri);
}


// Runs POST uri with body in the same way as RestApiGet.
bool RestApiPost(OrthancPluginContext* context, OrthancPluginMemoryBuffer* answer,
                 const std::string& uri, const std::string& body)
{
  const OrthancCallPriority priority;
  return CheckRestCall(context,
                       OrthancPluginRestApiPost(context, answer, uri.c_str(), body.c_str(),
                                                body.size()),
                       "POST", uri);
}
}  // namespace


void OrthancLogger::Info(const std::string& message)
{
  OrthancPluginLogInfo(context_, (LOG_PREFIX + message).c_str());
}


void OrthancLogger::Warning(const std::string& message)
{
  OrthancPluginLogWarning(context_, (LOG_PREFIX + message).c_str());
}


void OrthancLogger::Error(const std::string& message)
{
  OrthancPluginLogError(context_, (LOG_PREFIX + message).c_str());
}


bool OrthancGateway::GetJson(Json::Value& answer, const std::string& uri)
{
  MemoryBuffer buffer(context_);
  if (!RestApiGet(context_, buffer.Get(), uri))
  {
    return false;
  }

  std::string error;
  if (!ParseJson(answer, error, buffer.GetData(), buffer.GetSize()))
  {
    throw Exception(ErrorCode::ProtocolError, "Orthanc's response to GET " + uri +
                                                  " is not valid JSON: " + error);
  }
  return true;
}


bool OrthancGateway::GetBinary(std::string& answer, const std::string& uri)
{
  return ReadBinary(uri, [&answer](const char* data, size_t size) { answer.assign(data, size); });
}


bool OrthancGateway::ReadBinary(const std::string& uri,
                                const std::function<void(const char* data, size_t size)>& consumer)
{
  MemoryBuffer buffer(context_);
  if (!RestApiGet(context_, buffer.Get(), uri))
  {
    return false;
  }

  consumer(buffer.GetData(), buffer.GetSize());
  return true;
}


namespace
{
// A buffer that Orthanc allocated, freed through its API.
class OrthancBuffer final : public IBuffer
{
public:
  explicit OrthancBuffer(OrthancPluginContext* context) : buffer_(context)
  {
  }

  OrthancPluginMemoryBuffer* Get()
  {
    return buffer_.Get();
  }

  const char* GetData() const override
  {
    return buffer_.GetData();
  }

  size_t GetSize() const override
  {
    return buffer_.GetSize();
  }

private:
  MemoryBuffer buffer_;
};
}  // namespace


std::unique_ptr<IBuffer> OrthancGateway::ReadBuffer(const std::string& uri)
{
  auto buffer = std::make_unique<OrthancBuffer>(context_);
  if (!RestApiGet(context_, buffer->Get(), uri))
  {
    return nullptr;
  }
  return buffer;
}


bool OrthancGateway::PostJson(Json::Value& answer, const std::string& uri, const std::string& body)
{
  MemoryBuffer buffer(context_);
  if (!RestApiPost(context_, buffer.Get(), uri, body))
  {
    return false;
  }

  std::string error;
  if (!ParseJson(answer, error, buffer.GetData(), buffer.GetSize()))
  {
    throw Exception(ErrorCode::ProtocolError, "Orthanc's response to POST " + uri +
                                                  " is not valid JSON: " + error);
  }
  return true;
}


Json::Value ReadOrthancConfiguration(OrthancPluginContext* context)
{
  char* raw = OrthancPluginGetConfiguration(context);
  if (raw == nullptr)
  {
    throw Exception(ErrorCode::InternalError, "Orthanc returned no configuration");
  }

  const std::string copy(raw);
  OrthancPluginFreeString(context, raw);

  Json::Value configuration;
  std::string error;
  if (!ParseJson(configuration, error, copy.data(), copy.size()))
  {
    throw Exception(ErrorCode::BadConfiguration, "Orthanc's configuration is not valid JSON: " +
                                                     error);
  }
  return configuration;
}


std::string GetConfigurationDirectory(OrthancPluginContext* context)
{
  char* raw = OrthancPluginGetConfigurationPath(context);
  std::string path = (raw == nullptr ? "" : raw);
  if (raw != nullptr)
  {
    OrthancPluginFreeString(context, raw);
  }

  if (path.empty())
  {
    return ".";
  }

  // Orthanc takes either a file or a folder of files.
  if (path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0)
  {
    const size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
  }
  return path;
}


void AnswerJson(OrthancPluginContext* context, OrthancPluginRestOutput* output,
                const Json::Value& value, uint16_t status)
{
  const std::string body = WriteJson(value);
  if (status == 200)
  {
    OrthancPluginAnswerBuffer(context, output, body.c_str(), body.size(), "application/json");
  }
  else
  {
    OrthancPluginSetHttpHeader(context, output, "Content-Type", "application/json");
    OrthancPluginSendHttpStatus(context, output, status, body.c_str(), body.size());
  }
}


void AnswerError(OrthancPluginContext* context, OrthancPluginRestOutput* output, uint16_t status,
                 const std::string& message)
{
  Json::Value body;
  body["Message"] = message;
  body["HttpStatus"] = status;
  AnswerJson(context, output, body, status);
}
}  // namespace AzureDicom
