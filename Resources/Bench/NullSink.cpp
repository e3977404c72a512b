// A STOW-RS receiver for benchmarks that stores nothing. It reads HTTP/1.1 POST and PUT requests
// with multipart/related bodies and finds the SOP Class UID (0008,0016) and SOP Instance UID
// (0008,0018) of each part. It responds 200 with a DICOM JSON ReferencedSOPSequence that lists
// them. Only the C++17 standard library and POSIX sockets are used.
//
// Usage: null-sink [--port PORT] [--port-file PATH]
//   --port PORT       TCP port on 127.0.0.1 (default 0: a free port chosen by the kernel)
//   --port-file PATH  file that receives the port once the socket listens
//
// GET /stats returns the counters since start as JSON: Requests, Instances, Failed (parts
// without a SOP Instance UID), Bytes (request bodies) and Connections.
//
// The server binds to 127.0.0.1 only. Bodies are parsed as they arrive, with at most one
// socket buffer and the first PREFIX_BYTES of the current part in memory per connection.

#include "HttpMessages.h"
#include "MultipartScanner.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace NullSink;

namespace
{
const size_t RECEIVE_BUFFER_BYTES = 1 << 20;

// PS3.18 failure reason 0xC000 ("cannot understand") for a part without a SOP Instance UID.
const unsigned int FAILURE_CANNOT_UNDERSTAND = 0xC000;

// The counters that GET /stats returns, shared by every connection's thread.
std::atomic<uint64_t> requestCount{0};
std::atomic<uint64_t> instanceCount{0};
std::atomic<uint64_t> failedCount{0};
std::atomic<uint64_t> bodyBytes{0};
std::atomic<uint64_t> connectionCount{0};


std::string EscapeJson(const std::string& text)
{
  std::string result;
  for (char c : text)
  {
    if (c == '"' || c == '\\')
    {
      result.push_back('\\');
      result.push_back(c);
    }
    else if (static_cast<unsigned char>(c) < 0x20)
    {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      result += escaped;
    }
    else
    {
      result.push_back(c);
    }
  }
  return result;
}


// Builds the PS3.18 store instances response: ReferencedSOPSequence (0008,1199) for the parts
// with a SOP Instance UID, and FailedSOPSequence (0008,1198) with one item per other part.
std::string BuildStowResponse(const MultipartScanner& scanner)
{
  std::string json = "{\"00081199\":{\"vr\":\"SQ\",\"Value\":[";
  bool first = true;
  for (const AzureDicom::DicomIdentifiers& uids : scanner.GetInstances())
  {
    json += first ? "{" : ",{";
    first = false;
    if (!uids.sopClassUid.empty())
    {
      json += "\"00081150\":{\"vr\":\"UI\",\"Value\":[\"" + EscapeJson(uids.sopClassUid) + "\"]},";
    }
    json += "\"00081155\":{\"vr\":\"UI\",\"Value\":[\"" + EscapeJson(uids.sopInstanceUid) + "\"]}}";
  }
  json += "]}";

  if (scanner.GetFailedParts() > 0)
  {
    json += ",\"00081198\":{\"vr\":\"SQ\",\"Value\":[";
    for (size_t i = 0; i < scanner.GetFailedParts(); i++)
    {
      json += i == 0 ? "{" : ",{";
      json += "\"00081197\":{\"vr\":\"US\",\"Value\":[" +
              std::to_string(FAILURE_CANNOT_UNDERSTAND) + "]}}";
    }
    json += "]}";
  }
  json += "}";
  return json;
}


const char* GetReasonPhrase(int status)
{
  switch (status)
  {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Error";
  }
}


bool SendAll(int socket, const std::string& data)
{
  size_t sent = 0;
  while (sent < data.size())
  {
    const ssize_t count = send(socket, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (count < 0 && errno == EINTR)
    {
      continue;
    }
    if (count <= 0)
    {
      return false;
    }
    sent += static_cast<size_t>(count);
  }
  return true;
}


bool SendResponse(int socket, int status, const std::string& contentType, const std::string& body,
                  bool keepAlive)
{
  std::string response = "HTTP/1.1 " + std::to_string(status) + " " + GetReasonPhrase(status) +
                         "\r\nContent-Type: " + contentType +
                         "\r\nContent-Length: " + std::to_string(body.size()) +
                         (keepAlive ? "\r\n" : "\r\nConnection: close\r\n") + "\r\n" + body;
  return SendAll(socket, response);
}


std::string BuildErrorBody(const std::string& message)
{
  return "{\"Message\":\"" + EscapeJson(message) + "\"}";
}


std::string BuildStatsBody()
{
  return "{\"Requests\":" + std::to_string(requestCount.load()) +
         ",\"Instances\":" + std::to_string(instanceCount.load()) +
         ",\"Failed\":" + std::to_string(failedCount.load()) +
         ",\"Bytes\":" + std::to_string(bodyBytes.load()) +
         ",\"Connections\":" + std::to_string(connectionCount.load()) + "}";
}


// Serves the requests of one connection until the client closes it or an error ends it.
class Connection
{
public:
  explicit Connection(int socket) : socket_(socket), buffer_(RECEIVE_BUFFER_BYTES) {}

  ~Connection()
  {
    close(socket_);
  }

  void Serve()
  {
    try
    {
      while (ServeOneRequest())
      {
      }
    }
    catch (const ProtocolError& e)
    {
      std::cerr << "null-sink: rejected a request with HTTP " << e.GetStatus() << ": " << e.what()
                << std::endl;
      SendResponse(socket_, e.GetStatus(), "application/json", BuildErrorBody(e.what()), false);
    }
  }

private:
  // Reads more bytes into pending_; returns false when the client closed the connection.
  bool Receive()
  {
    for (;;)
    {
      const ssize_t count = recv(socket_, buffer_.data(), buffer_.size(), 0);
      if (count < 0 && errno == EINTR)
      {
        continue;
      }
      if (count <= 0)
      {
        return false;
      }
      pending_.append(buffer_.data(), static_cast<size_t>(count));
      return true;
    }
  }

  bool ServeOneRequest()
  {
    size_t headEnd;
    while ((headEnd = pending_.find("\r\n\r\n")) == std::string::npos)
    {
      if (pending_.size() > MAX_HEADER_BYTES)
      {
        throw ProtocolError(431, "the request headers exceed 64 KB");
      }
      if (!Receive())
      {
        return false;
      }
    }

    const Request request = ParseRequestHead(pending_.substr(0, headEnd));
    pending_.erase(0, headEnd + 4);

    const std::string connection = ToLower(request.GetHeader("connection"));
    const bool keepAlive =
        request.version == "HTTP/1.1" ? connection != "close" : connection == "keep-alive";

    if (request.method == "GET" && request.target == "/stats")
    {
      return SendResponse(socket_, 200, "application/json", BuildStatsBody(), keepAlive) &&
             keepAlive;
    }

    if (request.method != "POST" && request.method != "PUT")
    {
      // Any body of the request is left unread, so the connection ends with the response.
      const int status = request.method == "GET" ? 404 : 405;
      SendResponse(socket_, status, "application/json",
                   BuildErrorBody(request.method + " " + request.target +
                                  " is not served: expected POST or PUT of a multipart/related "
                                  "body, or GET /stats"),
                   false);
      return false;
    }

    return ServeStore(request, keepAlive);
  }

  bool ServeStore(const Request& request, bool keepAlive)
  {
    const std::string contentType = request.GetHeader("content-type");
    const std::string mediaType = ToLower(Trim(contentType.substr(0, contentType.find(';'))));
    const std::string boundary = GetHeaderParameter(contentType, "boundary");
    if (mediaType != "multipart/related" || boundary.empty())
    {
      throw ProtocolError(415, "expected Content-Type multipart/related with a boundary, got \"" +
                                   contentType.substr(0, 200) + "\"");
    }

    const bool chunked =
        ToLower(request.GetHeader("transfer-encoding")).find("chunked") != std::string::npos;
    const std::string lengthHeader = request.GetHeader("content-length");
    if (!chunked && lengthHeader.empty())
    {
      throw ProtocolError(411, "expected a Content-Length or Transfer-Encoding: chunked");
    }

    if (ToLower(request.GetHeader("expect")) == "100-continue" &&
        !SendAll(socket_, "HTTP/1.1 100 Continue\r\n\r\n"))
    {
      return false;
    }

    MultipartScanner scanner(boundary);
    uint64_t received = 0;
    if (chunked)
    {
      ChunkedDecoder decoder;
      std::string decoded;
      for (;;)
      {
        decoded.clear();
        const size_t consumed = decoder.Feed(pending_.data(), pending_.size(), decoded);
        pending_.erase(0, consumed);
        scanner.Feed(decoded.data(), decoded.size());
        received += decoded.size();
        if (decoder.IsDone())
        {
          break;
        }
        if (!Receive())
        {
          return false;
        }
      }
    }
    else
    {
      char* end = nullptr;
      uint64_t remaining = std::strtoull(lengthHeader.c_str(), &end, 10);
      if (end == nullptr || *end != '\0')
      {
        throw ProtocolError(400, "invalid Content-Length \"" + lengthHeader.substr(0, 40) + "\"");
      }
      for (;;)
      {
        const size_t count = static_cast<size_t>(std::min<uint64_t>(remaining, pending_.size()));
        scanner.Feed(pending_.data(), count);
        pending_.erase(0, count);
        remaining -= count;
        received += count;
        if (remaining == 0)
        {
          break;
        }
        if (!Receive())
        {
          return false;
        }
      }
    }

    scanner.Finish();
    requestCount++;
    instanceCount += scanner.GetInstances().size();
    failedCount += scanner.GetFailedParts();
    bodyBytes += received;

    int status = 200;
    if (scanner.GetInstances().empty())
    {
      status = 409;
    }
    else if (scanner.GetFailedParts() > 0)
    {
      status = 202;
    }
    return SendResponse(socket_, status, "application/dicom+json", BuildStowResponse(scanner),
                        keepAlive) &&
           keepAlive;
  }

  int socket_;
  std::vector<char> buffer_;
  std::string pending_;
};


void ServeConnection(int socket)
{
  connectionCount++;
  Connection connection(socket);
  connection.Serve();
}


int ParsePort(const char* text)
{
  char* end = nullptr;
  const long port = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || port < 0 || port > 65535)
  {
    throw std::invalid_argument(std::string("invalid --port \"") + text +
                                "\": expected a number from 0 to 65535");
  }
  return static_cast<int>(port);
}


int Listen(int port)
{
  const int server = socket(AF_INET, SOCK_STREAM, 0);
  if (server < 0)
  {
    throw std::runtime_error(std::string("socket() failed: ") + std::strerror(errno));
  }

  const int yes = 1;
  setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(server, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(server, 128) != 0)
  {
    throw std::runtime_error("cannot listen on 127.0.0.1:" + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  return server;
}


int GetBoundPort(int server)
{
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  if (getsockname(server, reinterpret_cast<sockaddr*>(&address), &length) != 0)
  {
    throw std::runtime_error(std::string("getsockname() failed: ") + std::strerror(errno));
  }
  return ntohs(address.sin_port);
}


void PrintUsage(std::ostream& output)
{
  output << "Usage: null-sink [--port PORT] [--port-file PATH]\n"
            "  --port PORT       TCP port on 127.0.0.1 (default 0: a free port)\n"
            "  --port-file PATH  file that receives the port once the socket listens\n";
}
}  // namespace


int main(int argc, char** argv)
{
  int port = 0;
  std::string portFile;
  try
  {
    for (int i = 1; i < argc; i++)
    {
      const std::string option = argv[i];
      if ((option == "--port" || option == "--port-file") && i + 1 >= argc)
      {
        throw std::invalid_argument(option + " needs a value");
      }
      if (option == "--port")
      {
        port = ParsePort(argv[++i]);
      }
      else if (option == "--port-file")
      {
        portFile = argv[++i];
      }
      else if (option == "-h" || option == "--help")
      {
        PrintUsage(std::cout);
        return 0;
      }
      else
      {
        throw std::invalid_argument("unknown option " + option);
      }
    }
  }
  catch (const std::invalid_argument& e)
  {
    std::cerr << "null-sink: " << e.what() << "\n";
    PrintUsage(std::cerr);
    return 2;
  }

  signal(SIGPIPE, SIG_IGN);

  int server;
  try
  {
    server = Listen(port);
    port = GetBoundPort(server);
  }
  catch (const std::runtime_error& e)
  {
    std::cerr << "null-sink: " << e.what() << std::endl;
    return 1;
  }

  if (!portFile.empty())
  {
    // Written to a temporary name and renamed, so that a reader never sees a partial number.
    const std::string temporary = portFile + ".tmp";
    std::ofstream(temporary) << port << "\n";
    if (std::rename(temporary.c_str(), portFile.c_str()) != 0)
    {
      std::cerr << "null-sink: cannot write the port to " << portFile << ": "
                << std::strerror(errno) << std::endl;
      return 1;
    }
  }
  std::cout << "null-sink: listening on 127.0.0.1:" << port << std::endl;

  for (;;)
  {
    const int client = accept(server, nullptr, nullptr);
    if (client < 0)
    {
      if (errno == EINTR || errno == ECONNABORTED)
      {
        continue;
      }
      std::cerr << "null-sink: accept() failed: " << std::strerror(errno) << std::endl;
      return 1;
    }

    const int yes = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    std::thread(ServeConnection, client).detach();
  }
}
