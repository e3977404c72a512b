#include "Azure/HttpClient.h"

#include "Common/Exception.h"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

namespace AzureDicom
{
namespace
{
const long CONNECT_TIMEOUT_SECONDS = 10;
const char PEM_MARKER[] = "-----BEGIN";
const char EMPTY_BODY[] = "";


struct SlistDeleter
{
  void operator()(curl_slist* list) const
  {
    curl_slist_free_all(list);
  }
};

using HeaderList = std::unique_ptr<curl_slist, SlistDeleter>;


// Destination of the write and header callbacks during one transfer.
struct TransferState
{
  HttpResponse* response;
  size_t maxResponseBytes;
};


// curl_global_init is thread-safe only from libcurl 7.84 on, and only where curl_version_info
// reports CURL_VERSION_THREADSAFE. Workers create their clients concurrently, so it runs once per
// process. Repeated calls have the same effect as one, so an Orthanc that initialized libcurl
// itself is not disturbed. curl_global_cleanup is left to process exit because another client
// may still be alive in any thread.
void InitializeLibcurlOnce()
{
  static std::once_flag once;
  static CURLcode result = CURLE_OK;

  std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });

  if (result != CURLE_OK)
  {
    throw Exception(ErrorCode::InternalError, std::string("curl_global_init failed: ") +
                                                  curl_easy_strerror(result) + " (" +
                                                  std::to_string(result) + ")");
  }
}


void CheckOption(CURLcode code, const char* option)
{
  if (code != CURLE_OK)
  {
    throw Exception(ErrorCode::InternalError, std::string("libcurl rejected the option ") + option +
                                                  ": " + curl_easy_strerror(code) + " (" +
                                                  std::to_string(code) + ")");
  }
}


char ToLowerAscii(char c)
{
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}


std::string TrimSpaces(const std::string& text)
{
  const char* whitespace = " \t\r\n";
  const size_t first = text.find_first_not_of(whitespace);
  if (first == std::string::npos)
  {
    return "";
  }

  const size_t last = text.find_last_not_of(whitespace);
  return text.substr(first, last - first + 1);
}


// Keeps the first maxResponseBytes of the body and reads the rest without storing it, so that
// the connection stays usable for the next request.
// The read position of libcurl's read callback in a RequestBody.
struct UploadState
{
  const RequestBody* body;
  size_t segment = 0;
  size_t offset = 0;                // within the segment
  std::unique_ptr<IBuffer> loaded = nullptr;  // the bytes of the current deferred segment
};


// Returns the bytes of the current segment, loading a deferred one, or null when it cannot be
// read or has another size than the body announced.
const char* GetSegmentData(UploadState& state, const BodySegment& segment)
{
  if (segment.deferred == nullptr)
  {
    return segment.data;
  }
  if (!state.loaded)
  {
    state.loaded = segment.deferred->Load();
    if (!state.loaded || state.loaded->GetSize() != segment.size)
    {
      state.loaded.reset();
      return nullptr;
    }
  }
  return state.loaded->GetData();
}


size_t OnReadBody(char* buffer, size_t size, size_t count, void* userData)
{
  UploadState& state = *static_cast<UploadState*>(userData);
  const std::vector<BodySegment>& segments = state.body->GetSegments();
  const size_t capacity = size * count;
  size_t written = 0;
  while (written < capacity && state.segment < segments.size())
  {
    const BodySegment& segment = segments[state.segment];
    const char* data = GetSegmentData(state, segment);
    if (data == nullptr)
    {
      return CURL_READFUNC_ABORT;
    }

    const size_t length = std::min(capacity - written, segment.size - state.offset);
    std::memcpy(buffer + written, data + state.offset, length);
    written += length;
    state.offset += length;
    if (state.offset == segment.size)
    {
      state.segment++;
      state.offset = 0;
      state.loaded.reset();
    }
  }
  return written;
}


// Rewinds the body to its start. libcurl calls it to send the body again, for example after it
// reused a connection that the server had closed.
int OnSeekBody(void* userData, curl_off_t offset, int origin)
{
  if (offset != 0 || origin != SEEK_SET)
  {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  UploadState& state = *static_cast<UploadState*>(userData);
  state.segment = 0;
  state.offset = 0;
  state.loaded.reset();
  return CURL_SEEKFUNC_OK;
}


size_t OnBodyData(char* data, size_t size, size_t count, void* userData)
{
  TransferState& state = *static_cast<TransferState*>(userData);
  std::string& body = state.response->body;
  const size_t length = size * count;

  const size_t room =
      state.maxResponseBytes > body.size() ? state.maxResponseBytes - body.size() : 0;
  if (length > room)
  {
    body.append(data, room);
    state.response->truncated = true;
  }
  else
  {
    body.append(data, length);
  }

  return length;
}


// libcurl passes every header line of every response, interim 1xx responses included. A status
// line starts a new response, so only the headers of the final one are kept. Repeated fields
// are joined with ", " as RFC 9110 section 5.3 allows.
size_t OnHeaderLine(char* data, size_t size, size_t count, void* userData)
{
  TransferState& state = *static_cast<TransferState*>(userData);
  const size_t length = size * count;
  const std::string line(data, length);

  if (line.rfind("HTTP/", 0) == 0)
  {
    state.response->headers.clear();
    return length;
  }

  const size_t colon = line.find(':');
  if (colon == std::string::npos)
  {
    return length;
  }

  std::string name = TrimSpaces(line.substr(0, colon));
  for (char& c : name)
  {
    c = ToLowerAscii(c);
  }

  const std::string value = TrimSpaces(line.substr(colon + 1));
  auto existing = state.response->headers.find(name);
  if (existing == state.response->headers.end())
  {
    state.response->headers.emplace(name, value);
  }
  else
  {
    existing->second += ", " + value;
  }

  return length;
}


bool IsHeaderName(const std::string& name, const std::string& expectedLowerCase)
{
  if (name.size() != expectedLowerCase.size())
  {
    return false;
  }

  for (size_t i = 0; i < name.size(); i++)
  {
    if (ToLowerAscii(name[i]) != expectedLowerCase[i])
    {
      return false;
    }
  }

  return true;
}


// A line break in a header would let a value inject headers of its own. The message names the
// header but never its value, which may be a token.
void CheckHeader(const HttpRequest& request, const std::string& name, const std::string& value)
{
  const bool badName = name.empty() || name.find_first_of(":\r\n") != std::string::npos;
  const bool badValue = value.find_first_of("\r\n") != std::string::npos;
  if (badName || badValue)
  {
    throw Exception(ErrorCode::InternalError,
                    request.method + " " + request.url + ": the header \"" +
                        (badName ? std::string("(invalid name)") : name) +
                        "\" is invalid; expected a name without ':' and no line breaks");
  }
}


HeaderList BuildHeaderList(const HttpRequest& request)
{
  HeaderList list;
  bool hasContentType = false;

  auto append = [&list](const std::string& line)
  {
    curl_slist* extended = curl_slist_append(list.get(), line.c_str());
    if (extended == nullptr)
    {
      throw Exception(ErrorCode::InternalError, "curl_slist_append failed: out of memory");
    }
    list.release();
    list.reset(extended);
  };

  for (const auto& header : request.headers)
  {
    CheckHeader(request, header.first, header.second);
    hasContentType = hasContentType || IsHeaderName(header.first, "content-type");

    // libcurl removes a header given as "Name:", and sends "Name;" as an empty header.
    append(header.second.empty() ? header.first + ";" : header.first + ": " + header.second);
  }

  if (request.body != nullptr || request.pieces != nullptr)
  {
    // Without this, libcurl waits up to a second for "100 Continue" before sending a large
    // body, and some proxies never send it.
    append("Expect:");

    if (!hasContentType)
    {
      // libcurl would otherwise label the body application/x-www-form-urlencoded.
      append("Content-Type:");
    }
  }

  return list;
}
}  // namespace


std::string HttpResponse::GetHeader(const std::string& lowerCaseName) const
{
  auto found = headers.find(lowerCaseName);
  return found == headers.end() ? std::string() : found->second;
}


HttpClient::HttpClient(const TlsSettings& tls, size_t maxResponseBytes)
    : curl_(nullptr), tls_(tls), maxResponseBytes_(maxResponseBytes)
{
  InitializeLibcurlOnce();

  curl_ = curl_easy_init();
  if (curl_ == nullptr)
  {
    throw Exception(ErrorCode::InternalError, "curl_easy_init returned no handle");
  }

  try
  {
    ConfigureHandle();
  }
  catch (...)
  {
    curl_easy_cleanup(curl_);
    throw;
  }
}


HttpClient::~HttpClient()
{
  curl_easy_cleanup(curl_);
}


static std::atomic<bool> allAborted{false};


// libcurl calls this about once a second during a transfer, and more often while data flows;
// a non-zero result aborts the transfer with CURLE_ABORTED_BY_CALLBACK. flag is the client's own
// abort flag, or null.
static int OnProgress(void* flag, curl_off_t, curl_off_t, curl_off_t, curl_off_t)
{
  const auto* ownFlag = static_cast<const std::atomic<bool>*>(flag);
  return allAborted.load() || (ownFlag != nullptr && ownFlag->load()) ? 1 : 0;
}


void HttpClient::SetAbortFlag(const std::atomic<bool>* flag)
{
  CheckOption(curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(flag)),
              "CURLOPT_XFERINFODATA");
}


void HttpClient::SetAllAborted(bool aborted)
{
  allAborted = aborted;
}


// Options that are the same for every request. They stay on the handle because it is never
// reset, which also keeps its connection cache.
void HttpClient::ConfigureHandle()
{
  CheckOption(curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L), "CURLOPT_NOSIGNAL");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SECONDS),
              "CURLOPT_CONNECTTIMEOUT");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 0L), "CURLOPT_FOLLOWLOCATION");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https"),
              "CURLOPT_PROTOCOLS_STR");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_TCP_KEEPALIVE, 1L), "CURLOPT_TCP_KEEPALIVE");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, OnProgress),
              "CURLOPT_XFERINFOFUNCTION");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, nullptr), "CURLOPT_XFERINFODATA");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L), "CURLOPT_NOPROGRESS");

  // "identity" keeps compressed responses out: the STOW-RS response parser and the body cap both
  // work on the bytes as they come.
  CheckOption(curl_easy_setopt(curl_, CURLOPT_ACCEPT_ENCODING, "identity"),
              "CURLOPT_ACCEPT_ENCODING");

  CheckOption(curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, tls_.verifyPeer ? 1L : 0L),
              "CURLOPT_SSL_VERIFYPEER");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, tls_.verifyPeer ? 2L : 0L),
              "CURLOPT_SSL_VERIFYHOST");

  if (tls_.caCertificates.find(PEM_MARKER) != std::string::npos)
  {
    // CURL_BLOB_COPY: libcurl keeps its own copy of the certificates.
    curl_blob blob;
    blob.data = const_cast<char*>(tls_.caCertificates.data());
    blob.len = tls_.caCertificates.size();
    blob.flags = CURL_BLOB_COPY;
    CheckOption(curl_easy_setopt(curl_, CURLOPT_CAINFO_BLOB, &blob), "CURLOPT_CAINFO_BLOB");
  }
  else if (!tls_.caCertificates.empty())
  {
    CheckOption(curl_easy_setopt(curl_, CURLOPT_CAINFO, tls_.caCertificates.c_str()),
                "CURLOPT_CAINFO");
  }

  CheckOption(curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, OnBodyData), "CURLOPT_WRITEFUNCTION");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, OnHeaderLine),
              "CURLOPT_HEADERFUNCTION");
}


void HttpClient::SetMethodAndBody(const HttpRequest& request)
{
  const bool hasBody = request.body != nullptr;
  const bool isPutOrDelete = request.method == "PUT" || request.method == "DELETE";
  if (!isPutOrDelete && request.method != "GET" && request.method != "POST")
  {
    throw Exception(ErrorCode::InternalError, "the HTTP method \"" + request.method + "\" for " +
                                                  request.url +
                                                  " is not supported; expected GET, POST, PUT or "
                                                  "DELETE");
  }

  const bool sendsBody =
      request.method == "POST" || request.method == "PUT" || hasBody || request.pieces != nullptr;
  if (request.pieces != nullptr)
  {
    // A null CURLOPT_POSTFIELDS makes libcurl read the body through the read callback.
    CheckOption(curl_easy_setopt(curl_, CURLOPT_POST, 1L), "CURLOPT_POST");
    CheckOption(curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, nullptr), "CURLOPT_POSTFIELDS");
    CheckOption(curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE,
                                 static_cast<curl_off_t>(request.pieces->GetSize())),
                "CURLOPT_POSTFIELDSIZE_LARGE");
  }
  else if (sendsBody)
  {
    // CURLOPT_POSTFIELDS keeps the pointer and does not copy the body. An absent body is sent
    // as an explicit zero length, because libcurl would otherwise call strlen on it.
    const char* data = hasBody ? request.body->data() : EMPTY_BODY;
    const curl_off_t size = hasBody ? static_cast<curl_off_t>(request.body->size()) : 0;
    CheckOption(curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, data), "CURLOPT_POSTFIELDS");
    CheckOption(curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, size),
                "CURLOPT_POSTFIELDSIZE_LARGE");
  }
  else
  {
    CheckOption(curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L), "CURLOPT_HTTPGET");
  }

  const char* customMethod = isPutOrDelete ? request.method.c_str() : nullptr;
  CheckOption(curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, customMethod),
              "CURLOPT_CUSTOMREQUEST");
}


HttpResponse HttpClient::Execute(const HttpRequest& request)
{
  if (allAborted)
  {
    throw Exception(ErrorCode::NetworkError,
                    request.method + " " + request.url + ": not sent, the plugin is stopping");
  }

  HttpResponse response;
  TransferState state{&response, maxResponseBytes_};
  std::array<char, CURL_ERROR_SIZE> errorBuffer{};

  HeaderList headers = BuildHeaderList(request);
  SetMethodAndBody(request);

  CheckOption(curl_easy_setopt(curl_, CURLOPT_URL, request.url.c_str()), "CURLOPT_URL");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers.get()), "CURLOPT_HTTPHEADER");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_TIMEOUT, static_cast<long>(request.timeoutSeconds)),
              "CURLOPT_TIMEOUT");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &state), "CURLOPT_WRITEDATA");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &state), "CURLOPT_HEADERDATA");
  CheckOption(curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, errorBuffer.data()),
              "CURLOPT_ERRORBUFFER");

  UploadState upload{request.pieces};
  if (request.pieces != nullptr)
  {
    CheckOption(curl_easy_setopt(curl_, CURLOPT_READFUNCTION, OnReadBody),
                "CURLOPT_READFUNCTION");
    CheckOption(curl_easy_setopt(curl_, CURLOPT_READDATA, &upload), "CURLOPT_READDATA");
    CheckOption(curl_easy_setopt(curl_, CURLOPT_SEEKFUNCTION, OnSeekBody),
                "CURLOPT_SEEKFUNCTION");
    CheckOption(curl_easy_setopt(curl_, CURLOPT_SEEKDATA, &upload), "CURLOPT_SEEKDATA");
  }

  const auto start = std::chrono::steady_clock::now();
  const CURLcode code = curl_easy_perform(curl_);
  response.elapsedMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  // The handle outlives this call: it must not keep pointers to this call's locals.
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, nullptr);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, nullptr);
  curl_easy_setopt(curl_, CURLOPT_READDATA, nullptr);
  curl_easy_setopt(curl_, CURLOPT_SEEKDATA, nullptr);

  if (code != CURLE_OK)
  {
    const std::string reason =
        errorBuffer[0] != '\0' ? errorBuffer.data() : curl_easy_strerror(code);
    throw Exception(ErrorCode::NetworkError, request.method + " " + request.url + ": " + reason +
                                                 " (" + std::to_string(code) + ")");
  }

  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}


std::string UrlEncode(const std::string& value)
{
  static const char hexDigits[] = "0123456789ABCDEF";
  std::string encoded;
  encoded.reserve(value.size() * 3);

  for (const char c : value)
  {
    const unsigned char byte = static_cast<unsigned char>(c);
    const bool unreserved = (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
                            (byte >= '0' && byte <= '9') || byte == '-' || byte == '.' ||
                            byte == '_' || byte == '~';
    if (unreserved)
    {
      encoded += c;
    }
    else
    {
      encoded += '%';
      encoded += hexDigits[byte >> 4];
      encoded += hexDigits[byte & 0x0F];
    }
  }

  return encoded;
}
}  // namespace AzureDicom
