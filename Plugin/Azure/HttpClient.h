#pragma once

#include "Common/Buffer.h"
#include "Sync/Configuration.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

typedef void CURL;

namespace AzureDicom
{
struct HttpRequest
{
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  const std::string* body = nullptr;  // not owned; large STOW-RS bodies are not copied

  // A body in pieces, streamed to the connection without being joined; not owned. It replaces
  // body when set.
  const RequestBody* pieces = nullptr;
  unsigned int timeoutSeconds = 60;   // the whole transfer; 0 means no limit
};


struct HttpResponse
{
  long status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  double elapsedMs = 0;
  bool truncated = false;  // the body was longer than the client's limit and was cut

  // Returns the header's value, or "" when it is absent. The name is matched in lower case.
  std::string GetHeader(const std::string& lowerCaseName) const;
};


// A libcurl easy handle that keeps its connection open between requests. Not thread-safe: each
// worker owns one.
class HttpClient
{
public:
  // Bodies of responses longer than maxResponseBytes are cut (HttpResponse::truncated), so that a
  // broken server cannot exhaust memory. tls.caCertificates is either PEM text or the path of a
  // PEM file.
  explicit HttpClient(const TlsSettings& tls, size_t maxResponseBytes = 16 * 1024 * 1024);
  ~HttpClient();

  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends the request and returns the response, whatever its status. Throws
  // Exception(NetworkError) naming the method, the URL and libcurl's message when no response
  // came (DNS, connection, TLS, timeout, reset). Methods are GET, POST, PUT and DELETE, and
  // redirects are returned, not followed.
  HttpResponse Execute(const HttpRequest& request);

  // Makes a request in progress fail with Exception(NetworkError) soon after *flag becomes true,
  // so that stopping Orthanc does not wait for a long upload. The flag must outlive the client.
  void SetAbortFlag(const std::atomic<bool>* flag);

  // Makes every request of every client fail with Exception(NetworkError) while aborted is true:
  // a request in progress soon after the call, a new one at once. The plugin's stop sets it,
  // because the credentials' token and Key Vault clients have no abort flag of their own.
  static void SetAllAborted(bool aborted);

private:
  void ConfigureHandle();
  void SetMethodAndBody(const HttpRequest& request);

  CURL* curl_;
  TlsSettings tls_;
  size_t maxResponseBytes_;
};


// Percent-encodes a value for application/x-www-form-urlencoded bodies and query strings.
std::string UrlEncode(const std::string& value);
}  // namespace AzureDicom
