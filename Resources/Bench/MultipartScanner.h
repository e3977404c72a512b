// Splits a multipart/related request body into parts and reads each part's UIDs.
#pragma once

#include "Common/DicomPrefixReader.h"
#include "HttpMessages.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace NullSink
{
const size_t MAX_PART_HEADER_BYTES = 16 * 1024;

// The attributes looked for come right after the file meta information, so the first 256 KB
// of a part contain them unless an earlier element of group 0008 is unusually large.
const size_t PREFIX_BYTES = 256 * 1024;

const size_t PARSE_THRESHOLDS[] = {4 * 1024, 64 * 1024, PREFIX_BYTES};
const size_t PARSE_THRESHOLD_COUNT = sizeof(PARSE_THRESHOLDS) / sizeof(PARSE_THRESHOLDS[0]);


// Splits a multipart body, fed in pieces of any size, into parts, and keeps the UIDs of each
// part. Only the first PREFIX_BYTES of a part are kept. The rest is scanned for the next
// delimiter and dropped.
class MultipartScanner
{
public:
  explicit MultipartScanner(const std::string& boundary) : delimiter_("\r\n--" + boundary)
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

  const std::vector<AzureDicom::DicomIdentifiers>& GetInstances() const
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
      partResolved_ = AzureDicom::DicomPrefixReader(prefix_.data(), prefix_.size())
                          .ReadSopUids(partUids_);
      if (partResolved_)
      {
        return;
      }
    }
  }

  void StartPart()
  {
    prefix_.clear();
    partUids_ = AzureDicom::DicomIdentifiers();
    partResolved_ = false;
    nextThreshold_ = 0;
  }

  void FinishPart()
  {
    if (!partResolved_)
    {
      partResolved_ = AzureDicom::DicomPrefixReader(prefix_.data(), prefix_.size())
                          .ReadSopUids(partUids_);
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
  AzureDicom::DicomIdentifiers partUids_;
  bool partResolved_ = false;
  size_t nextThreshold_ = 0;
  State state_ = State::Preamble;
  std::vector<AzureDicom::DicomIdentifiers> instances_;
  size_t failedParts_ = 0;
};
}  // namespace NullSink
