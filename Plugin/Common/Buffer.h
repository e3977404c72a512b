#pragma once

#include "Common/Exception.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace AzureDicom
{
// A block of bytes owned by its holder, such as a file that Orthanc's REST API returned, so
// that a request body can refer to it without copying it.
class IBuffer
{
public:
  virtual ~IBuffer() = default;
  virtual const char* GetData() const = 0;
  virtual size_t GetSize() const = 0;
};


class StringBuffer final : public IBuffer
{
public:
  explicit StringBuffer(std::string data) : data_(std::move(data))
  {
  }

  const char* GetData() const override
  {
    return data_.data();
  }

  size_t GetSize() const override
  {
    return data_.size();
  }

private:
  std::string data_;
};


// A piece of a request body whose bytes are read only when the upload reaches it, and released
// once sent, so that a request holds one large piece in memory at a time.
class IDeferredBuffer
{
public:
  virtual ~IDeferredBuffer() = default;

  // The number of bytes that Load() returns, known before loading.
  virtual uint64_t GetSize() const = 0;

  // Returns exactly GetSize() bytes, or null when they cannot be read. It must not throw,
  // because libcurl calls it from C code; the owner records why it failed.
  virtual std::unique_ptr<IBuffer> Load() noexcept = 0;
};


struct BodySegment
{
  const char* data;
  size_t size;
  IDeferredBuffer* deferred;  // when not null, the bytes come from it and data is null
};


// A request body in pieces that their owner keeps alive while the request runs.
class RequestBody
{
public:
  void Add(const char* data, size_t size)
  {
    segments_.push_back({data, size, nullptr});
    size_ += size;
  }

  void AddDeferred(IDeferredBuffer& deferred)
  {
    const auto size = static_cast<size_t>(deferred.GetSize());
    segments_.push_back({nullptr, size, &deferred});
    size_ += size;
  }

  const std::vector<BodySegment>& GetSegments() const
  {
    return segments_;
  }

  uint64_t GetSize() const
  {
    return size_;
  }

  // Returns the whole body in one string, loading the deferred pieces. Throws
  // Exception(InternalError) when one of them cannot be read.
  std::string ToString() const
  {
    std::string text;
    text.reserve(size_);
    for (const BodySegment& segment : segments_)
    {
      if (segment.deferred == nullptr)
      {
        text.append(segment.data, segment.size);
        continue;
      }

      const std::unique_ptr<IBuffer> loaded = segment.deferred->Load();
      if (!loaded || loaded->GetSize() != segment.size)
      {
        throw Exception(ErrorCode::InternalError,
                        "a piece of " + std::to_string(segment.size) +
                            " bytes of a request body could not be read");
      }
      text.append(loaded->GetData(), loaded->GetSize());
    }
    return text;
  }

  void Clear()
  {
    segments_.clear();
    size_ = 0;
  }

private:
  std::vector<BodySegment> segments_;
  uint64_t size_ = 0;
};
}  // namespace AzureDicom
