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

namespace
{
const size_t RECEIVE_BUFFER_BYTES = 1 << 20;
const size_t MAX_HEADER_BYTES = 64 * 1024;
const size_t MAX_PART_HEADER_BYTES = 16 * 1024;

// The attributes looked for come right after the file meta information, so the first 256 KB
// of a part contain them unless an earlier element of group 0008 is unusually large.
const size_t PREFIX_BYTES = 256 * 1024;

const size_t PARSE_THRESHOLDS[] = {4 * 1024, 64 * 1024, PREFIX_BYTES};
const size_t PARSE_THRESHOLD_COUNT = sizeof(PARSE_THRESHOLDS) / sizeof(PARSE_THRESHOLDS[0]);

const unsigned int MAX_SEQUENCE_DEPTH = 16;

// PS3.18 failure reason 0xC000 ("cannot understand") for a part without a SOP Instance UID.
const unsigned int FAILURE_CANNOT_UNDERSTAND = 0xC000;

std::atomic<uint64_t> requestCount{0};
std::atomic<uint64_t> instanceCount{0};
std::atomic<uint64_t> failedCount{0};
std::atomic<uint64_t> bodyBytes{0};
std::atomic<uint64_t> connectionCount{0};


class ProtocolError : public std::runtime_error
{
public:
  ProtocolError(int status, const std::string& message) : std::runtime_error(message), status_(status)
  {
  }

  int GetStatus() const
  {
    return status_;
  }

private:
  int status_;
};


std::string ToLower(std::string text)
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


std::string Trim(const std::string& text)
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
std::string GetHeaderParameter(const std::string& value, const std::string& name)
{
  size_t position = value.find(';');
  while (position != std::string::npos)
  {
    const size_t next = value.find(';', position + 1);
    const std::string parameter = value.substr(position + 1, next == std::string::npos
                                                                 ? std::string::npos
                                                                 : next - position - 1);
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


// The UIDs read from the start of one DICOM Part 10 file.
struct InstanceUids
{
  std::string sopClassUid;
  std::string sopInstanceUid;
};


// Reads elements of a DICOM data set in memory, just far enough to find (0008,0016) and
// (0008,0018). Deflated data sets are not inflated: their file meta information's (0002,0002)
// and (0002,0003) are used instead, which Part 10 requires to be equal to them.
class DicomPrefixReader
{
public:
  DicomPrefixReader(const char* data, size_t size)
      : data_(reinterpret_cast<const unsigned char*>(data)), size_(size)
  {
  }

  // Fills uids and returns true when the SOP Instance UID was found in the prefix.
  bool Read(InstanceUids& uids)
  {
    size_t position = 0;
    bool explicitVr = true;
    bool bigEndian = false;
    InstanceUids meta;

    if (size_ >= 132 && std::memcmp(data_ + 128, "DICM", 4) == 0)
    {
      position = 132;
      std::string transferSyntax;
      if (!ReadFileMeta(position, transferSyntax, meta))
      {
        return false;
      }

      if (transferSyntax == "1.2.840.10008.1.2")
      {
        explicitVr = false;
      }
      else if (transferSyntax == "1.2.840.10008.1.2.2")
      {
        bigEndian = true;
      }
      else if (transferSyntax == "1.2.840.10008.1.2.1.99" ||
               transferSyntax == "1.2.840.10008.1.2.4.95")
      {
        uids = meta;
        return !uids.sopInstanceUid.empty();
      }
    }
    else if (size_ >= 6)
    {
      // A data set without file meta information: explicit VR when bytes 4 and 5 are letters.
      explicitVr = IsUpperLetter(data_[4]) && IsUpperLetter(data_[5]);
    }

    return ReadTopLevel(position, explicitVr, bigEndian, uids);
  }

private:
  struct Element
  {
    uint16_t group = 0;
    uint16_t element = 0;
    char vr[2] = {0, 0};
    uint32_t length = 0;
    size_t valueOffset = 0;
  };

  static const uint32_t UNDEFINED_LENGTH = 0xFFFFFFFF;

  static bool IsUpperLetter(unsigned char c)
  {
    return c >= 'A' && c <= 'Z';
  }

  uint16_t Read16(size_t offset, bool bigEndian) const
  {
    return bigEndian ? static_cast<uint16_t>((data_[offset] << 8) | data_[offset + 1])
                     : static_cast<uint16_t>(data_[offset] | (data_[offset + 1] << 8));
  }

  uint32_t Read32(size_t offset, bool bigEndian) const
  {
    if (bigEndian)
    {
      return (uint32_t(data_[offset]) << 24) | (uint32_t(data_[offset + 1]) << 16) |
             (uint32_t(data_[offset + 2]) << 8) | uint32_t(data_[offset + 3]);
    }
    return uint32_t(data_[offset]) | (uint32_t(data_[offset + 1]) << 8) |
           (uint32_t(data_[offset + 2]) << 16) | (uint32_t(data_[offset + 3]) << 24);
  }

  static bool HasLongLength(const char vr[2])
  {
    static const char* const longVrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                          "SV", "UC", "UN", "UR", "UT", "UV"};
    for (const char* candidate : longVrs)
    {
      if (vr[0] == candidate[0] && vr[1] == candidate[1])
      {
        return true;
      }
    }
    return false;
  }

  // Reads the header of the element at position. Item and delimitation tags (FFFE,xxxx) have no
  // VR in any transfer syntax.
  bool ReadElementHeader(Element& element, size_t position, bool explicitVr, bool bigEndian) const
  {
    if (position + 8 > size_)
    {
      return false;
    }

    element.group = Read16(position, bigEndian);
    element.element = Read16(position + 2, bigEndian);
    if (element.group == 0xFFFE || !explicitVr)
    {
      element.vr[0] = element.vr[1] = 0;
      element.length = Read32(position + 4, bigEndian);
      element.valueOffset = position + 8;
      return true;
    }

    element.vr[0] = static_cast<char>(data_[position + 4]);
    element.vr[1] = static_cast<char>(data_[position + 5]);
    if (HasLongLength(element.vr))
    {
      if (position + 12 > size_)
      {
        return false;
      }
      element.length = Read32(position + 8, bigEndian);
      element.valueOffset = position + 12;
    }
    else
    {
      element.length = Read16(position + 6, bigEndian);
      element.valueOffset = position + 8;
    }
    return true;
  }

  std::string ReadUid(const Element& element) const
  {
    if (element.length == UNDEFINED_LENGTH || element.valueOffset + element.length > size_)
    {
      return "";
    }

    std::string value(reinterpret_cast<const char*>(data_ + element.valueOffset), element.length);
    while (!value.empty() && (value.back() == '\0' || value.back() == ' '))
    {
      value.pop_back();
    }
    return value;
  }

  bool ReadFileMeta(size_t& position, std::string& transferSyntax, InstanceUids& meta) const
  {
    for (;;)
    {
      Element element;
      if (!ReadElementHeader(element, position, true, false))
      {
        return false;
      }
      if (element.group != 0x0002)
      {
        return true;
      }
      if (element.length == UNDEFINED_LENGTH)
      {
        return false;
      }

      if (element.element == 0x0002)
      {
        meta.sopClassUid = ReadUid(element);
      }
      else if (element.element == 0x0003)
      {
        meta.sopInstanceUid = ReadUid(element);
      }
      else if (element.element == 0x0010)
      {
        transferSyntax = ReadUid(element);
      }
      position = element.valueOffset + element.length;
    }
  }

  // Moves position past a value of undefined length: the items of a sequence (or of an UN
  // element, whose content is implicit VR little endian) up to the sequence delimitation item.
  bool SkipUndefinedLength(size_t& position, bool explicitVr, bool bigEndian,
                           unsigned int depth) const
  {
    if (depth > MAX_SEQUENCE_DEPTH)
    {
      return false;
    }

    for (;;)
    {
      Element item;
      if (!ReadElementHeader(item, position, explicitVr, bigEndian) || item.group != 0xFFFE)
      {
        return false;
      }
      position = item.valueOffset;

      if (item.element == 0xE0DD)  // sequence delimitation item
      {
        return true;
      }
      if (item.element != 0xE000)
      {
        return false;
      }

      if (item.length != UNDEFINED_LENGTH)
      {
        position += item.length;
        continue;
      }

      // An item of undefined length: its elements up to the item delimitation item.
      for (;;)
      {
        Element nested;
        if (!ReadElementHeader(nested, position, explicitVr, bigEndian))
        {
          return false;
        }
        position = nested.valueOffset;
        if (nested.group == 0xFFFE && nested.element == 0xE00D)
        {
          break;
        }
        if (nested.length == UNDEFINED_LENGTH)
        {
          const bool unknown = nested.vr[0] == 'U' && nested.vr[1] == 'N';
          if (!SkipUndefinedLength(position, unknown ? false : explicitVr,
                                   unknown ? false : bigEndian, depth + 1))
          {
            return false;
          }
        }
        else
        {
          position += nested.length;
        }
      }
    }
  }

  bool ReadTopLevel(size_t position, bool explicitVr, bool bigEndian, InstanceUids& uids) const
  {
    for (;;)
    {
      Element element;
      if (!ReadElementHeader(element, position, explicitVr, bigEndian))
      {
        return false;
      }

      const uint32_t tag = (uint32_t(element.group) << 16) | element.element;
      if (tag > 0x00080018)
      {
        return false;  // elements are sorted by tag, so (0008,0018) is absent
      }
      if (tag == 0x00080016)
      {
        uids.sopClassUid = ReadUid(element);
      }
      else if (tag == 0x00080018)
      {
        uids.sopInstanceUid = ReadUid(element);
        return !uids.sopInstanceUid.empty();
      }

      position = element.valueOffset;
      if (element.length == UNDEFINED_LENGTH)
      {
        const bool unknown = element.vr[0] == 'U' && element.vr[1] == 'N';
        if (!SkipUndefinedLength(position, unknown ? false : explicitVr,
                                 unknown ? false : bigEndian, 0))
        {
          return false;
        }
      }
      else
      {
        position += element.length;
      }
    }
  }

  const unsigned char* data_;
  size_t size_;
};


// Splits a multipart body, fed in pieces of any size, into parts, and keeps the UIDs of each
// part. Only the first PREFIX_BYTES of a part are kept. The rest is scanned for the next
// delimiter and dropped.
class MultipartScanner
{
public:
  explicit MultipartScanner(const std::string& boundary)
      : delimiter_("\r\n--" + boundary)
  {
    // The first delimiter may start the body, without the CRLF that precedes the others.
    window_ = "\r\n";
  }

  void Feed(const char* data, size_t size)
  {
    window_.append(data, size);
    size_t position = 0;
    while (Step(position))
    {
    }
    window_.erase(0, position);
  }

  // Throws ProtocolError unless the body ended with the close delimiter.
  void Finish() const
  {
    if (state_ != State::Epilogue)
    {
      throw ProtocolError(400, "the multipart body ends before its close delimiter \"--" +
                                   delimiter_.substr(4) + "--\"");
    }
  }

  const std::vector<InstanceUids>& GetInstances() const
  {
    return instances_;
  }

  size_t GetFailedParts() const
  {
    return failedParts_;
  }

private:
  enum class State
  {
    Preamble,        // before the first delimiter
    AfterDelimiter,  // "--" (close delimiter) or CRLF (a part follows)
    PartHeaders,
    PartBody,
    Epilogue
  };

  // Processes window_ from position; returns false when more data is needed.
  bool Step(size_t& position)
  {
    switch (state_)
    {
      case State::Preamble:
      case State::PartBody:
        return ScanForDelimiter(position);

      case State::AfterDelimiter:
      {
        if (window_.size() - position < 2)
        {
          return false;
        }
        if (window_.compare(position, 2, "--") == 0)
        {
          state_ = State::Epilogue;
        }
        else
        {
          // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
          const size_t end = window_.find("\r\n", position);
          if (end == std::string::npos)
          {
            return false;
          }
          position = end + 2;
          state_ = State::PartHeaders;
        }
        return true;
      }

      case State::PartHeaders:
      {
        const size_t end = window_.find("\r\n\r\n", position);
        if (end == std::string::npos)
        {
          if (window_.size() - position > MAX_PART_HEADER_BYTES)
          {
            throw ProtocolError(400, "the headers of a part exceed 16 KB");
          }
          return false;
        }
        position = end + 4;
        StartPart();
        state_ = State::PartBody;
        return true;
      }

      case State::Epilogue:
      default:
        position = window_.size();
        return false;
    }
  }

  bool ScanForDelimiter(size_t& position)
  {
    const char* start = window_.data() + position;
    const size_t available = window_.size() - position;
    const void* found = memmem(start, available, delimiter_.data(), delimiter_.size());
    if (found != nullptr)
    {
      const size_t length = static_cast<const char*>(found) - start;
      KeepPrefix(start, length);
      if (state_ == State::PartBody)
      {
        FinishPart();
      }
      position += length + delimiter_.size();
      state_ = State::AfterDelimiter;
      return true;
    }

    // The end of the window may hold the start of a delimiter: keep that much for the next feed.
    const size_t keep = std::min(available, delimiter_.size() - 1);
    KeepPrefix(start, available - keep);
    position += available - keep;
    return false;
  }

  // Copies the start of the current part into prefix_ until its UIDs are found. The prefix is
  // parsed each time it reaches a size of PARSE_THRESHOLDS, so that most parts are copied only
  // up to their first 4 KB.
  void KeepPrefix(const char* data, size_t size)
  {
    if (state_ != State::PartBody || partResolved_ || prefix_.size() >= PREFIX_BYTES)
    {
      return;
    }

    prefix_.append(data, std::min(size, PREFIX_BYTES - prefix_.size()));
    while (nextThreshold_ < PARSE_THRESHOLD_COUNT &&
           prefix_.size() >= PARSE_THRESHOLDS[nextThreshold_])
    {
      nextThreshold_++;
      partResolved_ = DicomPrefixReader(prefix_.data(), prefix_.size()).Read(partUids_);
      if (partResolved_)
      {
        return;
      }
    }
  }

  void StartPart()
  {
    prefix_.clear();
    partUids_ = InstanceUids();
    partResolved_ = false;
    nextThreshold_ = 0;
  }

  void FinishPart()
  {
    if (!partResolved_)
    {
      partResolved_ = DicomPrefixReader(prefix_.data(), prefix_.size()).Read(partUids_);
    }

    if (partResolved_)
    {
      instances_.push_back(partUids_);
    }
    else
    {
      failedParts_++;
    }
  }

  std::string delimiter_;
  std::string window_;
  std::string prefix_;
  InstanceUids partUids_;
  bool partResolved_ = false;
  size_t nextThreshold_ = 0;
  State state_ = State::Preamble;
  std::vector<InstanceUids> instances_;
  size_t failedParts_ = 0;
};


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


Request ParseRequestHead(const std::string& head)
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
    const std::string line = head.substr(start, lineEnd == std::string::npos ? std::string::npos
                                                                             : lineEnd - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos)
    {
      throw ProtocolError(400, "invalid header line \"" + line.substr(0, 80) + "\"");
    }
    request.headers.emplace_back(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
  }
  return request;
}


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
  for (const InstanceUids& uids : scanner.GetInstances())
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
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    default: return "Error";
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
    const bool keepAlive = request.version == "HTTP/1.1" ? connection != "close"
                                                         : connection == "keep-alive";

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

    const bool chunked = ToLower(request.GetHeader("transfer-encoding")).find("chunked") !=
                         std::string::npos;
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
