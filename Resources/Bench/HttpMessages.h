// HTTP/1.1 request parsing for the null sink: the request head, header parameters and chunked
// bodies (RFC 9112).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace NullSink
{
const size_t MAX_HEADER_BYTES = 64 * 1024;


// A request that the sink rejects, with the HTTP status of its error response.
class ProtocolError : public std::runtime_error
{
public:
  ProtocolError(int status, const std::string& message)
      : std::runtime_error(message), status_(status)
  {
  }

  int GetStatus() const
  {
    return status_;
  }

private:
  int status_;
};


inline std::string ToLower(std::string text)
{
  for (char& c : text)
  {
    if (c >= 'A' && c <= 'Z')
    {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return text;
}


inline std::string Trim(const std::string& text)
{
  const char* spaces = " \t\r\n";
  const size_t first = text.find_first_not_of(spaces);
  if (first == std::string::npos)
  {
    return "";
  }
  return text.substr(first, text.find_last_not_of(spaces) - first + 1);
}


// Returns a parameter of a header value such as `multipart/related; boundary="abc"`, or "".
inline std::string GetHeaderParameter(const std::string& value, const std::string& name)
{
  size_t position = value.find(';');
  while (position != std::string::npos)
  {
    const size_t next = value.find(';', position + 1);
    const std::string parameter = value.substr(
        position + 1, next == std::string::npos ? std::string::npos : next - position - 1);
    const size_t equals = parameter.find('=');
    if (equals != std::string::npos && ToLower(Trim(parameter.substr(0, equals))) == name)
    {
      std::string result = Trim(parameter.substr(equals + 1));
      if (result.size() >= 2 && result.front() == '"' && result.back() == '"')
      {
        result = result.substr(1, result.size() - 2);
      }
      return result;
    }
    position = next;
  }
  return "";
}


// Decodes a chunked request body (RFC 9112 section 7.1) fed in pieces of any size.
class ChunkedDecoder
{
public:
  // Appends the decoded bytes of data to output and returns the bytes of data consumed: all
  // of them unless the body ended within data (the rest is the next request).
  size_t Feed(const char* data, size_t size, std::string& output)
  {
    size_t position = 0;
    while (position < size && state_ != State::Done)
    {
      if (state_ == State::Data)
      {
        const size_t count = static_cast<size_t>(std::min<uint64_t>(remaining_, size - position));
        output.append(data + position, count);
        position += count;
        remaining_ -= count;
        if (remaining_ == 0)
        {
          state_ = State::DataEnd;
        }
        continue;
      }

      line_.push_back(data[position++]);
      if (line_.size() > MAX_HEADER_BYTES)
      {
        throw ProtocolError(400, "a chunk size line or trailer exceeds 64 KB");
      }
      if (line_.size() < 2 || line_.compare(line_.size() - 2, 2, "\r\n") != 0)
      {
        continue;
      }

      const std::string line = line_.substr(0, line_.size() - 2);
      line_.clear();
      HandleLine(line);
    }
    return position;
  }

  bool IsDone() const
  {
    return state_ == State::Done;
  }

private:
  enum class State
  {
    Size,
    Data,
    DataEnd,
    Trailer,
    Done
  };

  void HandleLine(const std::string& line)
  {
    switch (state_)
    {
      case State::Size:
      {
        char* end = nullptr;
        const std::string digits = line.substr(0, line.find(';'));
        errno = 0;
        const unsigned long long chunkSize = std::strtoull(digits.c_str(), &end, 16);
        if (digits.empty() || errno != 0 || (end != nullptr && Trim(end) != ""))
        {
          throw ProtocolError(400, "invalid chunk size line \"" + line.substr(0, 40) + "\"");
        }
        remaining_ = chunkSize;
        state_ = chunkSize == 0 ? State::Trailer : State::Data;
        break;
      }

      case State::DataEnd:
        if (!line.empty())
        {
          throw ProtocolError(400, "invalid chunk: its data is longer than its size line");
        }
        state_ = State::Size;
        break;

      case State::Trailer:
        if (line.empty())
        {
          state_ = State::Done;
        }
        break;

      default:
        break;
    }
  }

  State state_ = State::Size;
  uint64_t remaining_ = 0;
  std::string line_;
};


struct Request
{
  std::string method;
  std::string target;
  std::string version;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case

  std::string GetHeader(const std::string& name) const
  {
    for (const auto& header : headers)
    {
      if (header.first == name)
      {
        return header.second;
      }
    }
    return "";
  }
};


inline Request ParseRequestHead(const std::string& head)
{
  Request request;
  size_t lineEnd = head.find("\r\n");
  const std::string requestLine = head.substr(0, lineEnd);
  const size_t firstSpace = requestLine.find(' ');
  const size_t secondSpace = requestLine.find(' ', firstSpace + 1);
  if (firstSpace == std::string::npos || secondSpace == std::string::npos)
  {
    throw ProtocolError(400, "invalid request line \"" + requestLine.substr(0, 80) + "\"");
  }
  request.method = requestLine.substr(0, firstSpace);
  request.target = requestLine.substr(firstSpace + 1, secondSpace - firstSpace - 1);
  request.version = requestLine.substr(secondSpace + 1);

  while (lineEnd != std::string::npos && lineEnd + 2 < head.size())
  {
    const size_t start = lineEnd + 2;
    lineEnd = head.find("\r\n", start);
    const std::string line =
        head.substr(start, lineEnd == std::string::npos ? std::string::npos : lineEnd - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos)
    {
      throw ProtocolError(400, "invalid header line \"" + line.substr(0, 80) + "\"");
    }
    request.headers.emplace_back(ToLower(Trim(line.substr(0, colon))),
                                 Trim(line.substr(colon + 1)));
  }
  return request;
}
}  // namespace NullSink
