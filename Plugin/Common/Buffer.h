#pragma once

#include <cstddef>
#include <cstdint>
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


struct BodySegment
{
  const char* data;
  size_t size;
};


// A request body in pieces that their owner keeps alive while the request runs.
class RequestBody
{
public:
  void Add(const char* data, size_t size)
  {
    segments_.push_back({data, size});
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

  std::string ToString() const
  {
    std::string text;
    text.reserve(size_);
    for (const BodySegment& segment : segments_)
    {
      text.append(segment.data, segment.size);
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
