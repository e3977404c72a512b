#pragma once

// An HTTP/1.1 server on 127.0.0.1 for the tests of the HTTP client and of the credentials. It
// records every request and sends the responses queued by the test, in order. It parses
// only what libcurl sends (Content-Length bodies, no chunked uploads).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace AzureDicom
{
namespace Testing
{
struct RecordedRequest
{
  std::string method;
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  int connection = 0;  // 1 for the first accepted connection, 2 for the next, ...

  std::string GetHeader(const std::string& lowerCaseName) const
  {
    auto found = headers.find(lowerCaseName);
    return found == headers.end() ? std::string() : found->second;
  }

  bool HasHeader(const std::string& lowerCaseName) const
  {
    return headers.count(lowerCaseName) != 0;
  }
};


struct CannedResponse
{
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int delayMs = 0;      // waits this long before responding
  bool silent = false;  // never responds, so that the client times out
  std::string raw;      // when not empty, sent as is instead of status, headers and body
};


class LoopbackHttpServer
{
 public:
  LoopbackHttpServer()
  {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    if (listener_ < 0)
    {
      throw std::runtime_error(std::string("socket() failed: ") + std::strerror(errno));
    }

    sockaddr_in address = MakeLoopbackAddress(0);
    socklen_t length = sizeof(address);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        listen(listener_, LISTEN_BACKLOG) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    {
      const std::string reason = std::strerror(errno);
      close(listener_);
      throw std::runtime_error("cannot listen on 127.0.0.1: " + reason);
    }

    port_ = ntohs(address.sin_port);

    if (pipe(stopPipe_) != 0)
    {
      close(listener_);
      throw std::runtime_error(std::string("pipe() failed: ") + std::strerror(errno));
    }

    thread_ = std::thread([this] { Run(); });
  }

  ~LoopbackHttpServer()
  {
    const char stop = 's';
    (void)!write(stopPipe_[1], &stop, 1);
    thread_.join();

    for (Connection& connection : connections_)
    {
      close(connection.socket);
    }

    close(listener_);
    close(stopPipe_[0]);
    close(stopPipe_[1]);
  }

  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  uint16_t GetPort() const
  {
    return port_;
  }

  std::string GetUrl(const std::string& path) const
  {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  // Requests without a queued response get an empty 200.
  void Enqueue(const CannedResponse& response)
  {
    std::lock_guard<std::mutex> lock(mutex_);
    responses_.push_back(response);
  }

  std::vector<RecordedRequest> GetRequests()
  {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

  int GetAcceptCount() const
  {
    return acceptCount_;
  }

  static sockaddr_in MakeLoopbackAddress(uint16_t port)
  {
    sockaddr_in address;
    std::memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
  }

 private:
  static const int LISTEN_BACKLOG = 16;
  static const size_t READ_CHUNK_BYTES = 64 * 1024;

  struct Connection
  {
    int socket;
    int number;
    std::string pending;  // bytes received and not yet parsed as a request
    bool silenced;        // a silent response was chosen: read on, never respond
  };

  void Run()
  {
    for (;;)
    {
      std::vector<pollfd> watched = {{stopPipe_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (const Connection& connection : connections_)
      {
        watched.push_back({connection.socket, POLLIN, 0});
      }

      if (poll(watched.data(), watched.size(), -1) < 0)
      {
        if (errno == EINTR)
        {
          continue;
        }
        return;
      }

      if (watched[0].revents != 0)
      {
        return;
      }

      if (watched[1].revents & POLLIN)
      {
        Accept();
      }

      for (size_t i = 2; i < watched.size(); i++)
      {
        if (watched[i].revents != 0)
        {
          ReadFrom(watched[i].fd);
        }
      }

      connections_.erase(std::remove_if(connections_.begin(), connections_.end(),
                                        [](const Connection& c) { return c.socket < 0; }),
                         connections_.end());
    }
  }

  void Accept()
  {
    const int client = accept(listener_, nullptr, nullptr);
    if (client >= 0)
    {
      acceptCount_++;
      connections_.push_back({client, acceptCount_.load(), std::string(), false});
    }
  }

  void ReadFrom(int socketFd)
  {
    auto found = std::find_if(connections_.begin(), connections_.end(),
                              [socketFd](const Connection& c) { return c.socket == socketFd; });
    if (found == connections_.end())
    {
      return;
    }

    Connection& connection = *found;
    char buffer[READ_CHUNK_BYTES];
    const ssize_t received = recv(connection.socket, buffer, sizeof(buffer), 0);
    if (received <= 0)
    {
      close(connection.socket);
      connection.socket = -1;
      return;
    }

    connection.pending.append(buffer, static_cast<size_t>(received));

    RecordedRequest request;
    while (!connection.silenced && TryParseRequest(connection, request))
    {
      Respond(connection, request);
    }
  }

  static std::string ToLower(std::string text)
  {
    for (char& c : text)
    {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return text;
  }

  static std::string Trim(const std::string& text)
  {
    const size_t first = text.find_first_not_of(" \t");
    const size_t last = text.find_last_not_of(" \t");
    return first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
  }

  // Takes one complete request off connection.pending, if there is one.
  static bool TryParseRequest(Connection& connection, RecordedRequest& request)
  {
    const size_t headerEnd = connection.pending.find("\r\n\r\n");
    if (headerEnd == std::string::npos)
    {
      return false;
    }

    request = RecordedRequest();
    request.connection = connection.number;

    const std::string head = connection.pending.substr(0, headerEnd);
    size_t lineEnd = head.find("\r\n");
    const std::string requestLine = head.substr(0, lineEnd);
    const size_t firstSpace = requestLine.find(' ');
    const size_t secondSpace = requestLine.find(' ', firstSpace + 1);
    request.method = requestLine.substr(0, firstSpace);
    request.target = requestLine.substr(firstSpace + 1, secondSpace - firstSpace - 1);

    while (lineEnd != std::string::npos)
    {
      const size_t start = lineEnd + 2;
      lineEnd = head.find("\r\n", start);
      const std::string line =
          head.substr(start, lineEnd == std::string::npos ? std::string::npos : lineEnd - start);
      const size_t colon = line.find(':');
      if (colon != std::string::npos)
      {
        request.headers[ToLower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
      }
    }

    const size_t bodyLength =
        request.HasHeader("content-length") ? std::stoul(request.GetHeader("content-length")) : 0;
    const size_t bodyStart = headerEnd + 4;
    if (connection.pending.size() < bodyStart + bodyLength)
    {
      return false;
    }

    request.body = connection.pending.substr(bodyStart, bodyLength);
    connection.pending.erase(0, bodyStart + bodyLength);
    return true;
  }

  CannedResponse TakeResponse(const RecordedRequest& request)
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requests_.push_back(request);
    if (responses_.empty())
    {
      return CannedResponse();
    }

    CannedResponse response = responses_.front();
    responses_.pop_front();
    return response;
  }

  static std::string Serialize(const CannedResponse& response)
  {
    if (!response.raw.empty())
    {
      return response.raw;
    }

    std::string text = "HTTP/1.1 " + std::to_string(response.status) + " Canned\r\n";
    for (const auto& header : response.headers)
    {
      text += header.first + ": " + header.second + "\r\n";
    }

    text += "Content-Length: " + std::to_string(response.body.size()) + "\r\n\r\n";
    return text + response.body;
  }

  void Respond(Connection& connection, const RecordedRequest& request)
  {
    const CannedResponse response = TakeResponse(request);
    if (response.silent)
    {
      connection.silenced = true;
      return;
    }

    if (response.delayMs > 0)
    {
      std::this_thread::sleep_for(std::chrono::milliseconds(response.delayMs));
    }

    const std::string text = Serialize(response);
    size_t sent = 0;
    while (sent < text.size())
    {
      const ssize_t written =
          send(connection.socket, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (written <= 0)
      {
        return;
      }
      sent += static_cast<size_t>(written);
    }
  }

  int listener_ = -1;
  int stopPipe_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::atomic<int> acceptCount_{0};
  std::vector<Connection> connections_;  // used by the server thread only
  std::mutex mutex_;                     // protects requests_ and responses_
  std::vector<RecordedRequest> requests_;
  std::deque<CannedResponse> responses_;
  std::thread thread_;
};


// Parses an application/x-www-form-urlencoded body into its fields, decoding %XX and '+'.
inline std::map<std::string, std::string> ParseFormBody(const std::string& body)
{
  auto decode = [](const std::string& text)
  {
    std::string decoded;
    for (size_t i = 0; i < text.size(); i++)
    {
      if (text[i] == '+')
      {
        decoded += ' ';
      }
      else if (text[i] == '%' && i + 2 < text.size())
      {
        decoded += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
        i += 2;
      }
      else
      {
        decoded += text[i];
      }
    }
    return decoded;
  };

  std::map<std::string, std::string> fields;
  size_t start = 0;
  while (start <= body.size())
  {
    size_t end = body.find('&', start);
    if (end == std::string::npos)
    {
      end = body.size();
    }

    const std::string pair = body.substr(start, end - start);
    const size_t equals = pair.find('=');
    if (equals != std::string::npos)
    {
      fields[decode(pair.substr(0, equals))] = decode(pair.substr(equals + 1));
    }

    start = end + 1;
  }

  return fields;
}
}  // namespace Testing
}  // namespace AzureDicom
