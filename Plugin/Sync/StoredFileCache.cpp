#include "Sync/StoredFileCache.h"

#include <cstring>
#include <string_view>

namespace AzureDicom
{
StoredFileCache::StoredFileCache(size_t capacityBytes) :
    capacity_(capacityBytes),
    bytes_(new char[capacityBytes]),
    files_(new File[MAX_FILES]),
    index_(MAX_FILES, [this](uint32_t position) {
      return std::string_view(files_[position].orthancId, OrthancIdIndex::ID_LENGTH);
    })
{
}


void StoredFileCache::MakeRoom(uint64_t start, size_t size)
{
  // The ring keeps the capacity_ bytes before the new file's end, so a file that starts
  // earlier is overwritten.
  while (dropped_ < written_)
  {
    const size_t position = dropped_ % MAX_FILES;
    const File& oldest = files_[position];
    if (written_ - dropped_ < MAX_FILES && oldest.start + capacity_ >= start + size)
    {
      break;
    }
    index_.Remove(std::string_view(oldest.orthancId, OrthancIdIndex::ID_LENGTH),
                  static_cast<uint32_t>(position));
    dropped_++;
  }
}


bool StoredFileCache::Keep(const std::string& orthancId, const char* file, size_t size)
{
  if (file == nullptr || size == 0 || size > MAX_FILE_BYTES || size > capacity_ ||
      !OrthancIdIndex::IsOrthancId(orthancId))
  {
    return false;
  }

  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock())
  {
    return false;
  }

  // A file does not wrap around the end of the ring: it starts the next lap instead.
  uint64_t start = end_;
  if (start % capacity_ + size > capacity_)
  {
    start += capacity_ - start % capacity_;
  }
  MakeRoom(start, size);

  std::memcpy(bytes_.get() + start % capacity_, file, size);
  const size_t position = written_ % MAX_FILES;
  File& record = files_[position];
  std::memcpy(record.orthancId, orthancId.data(), OrthancIdIndex::ID_LENGTH);
  record.start = start;
  record.size = static_cast<uint32_t>(size);
  index_.Set(orthancId, static_cast<uint32_t>(position));
  written_++;
  end_ = start + size;
  return true;
}


std::unique_ptr<IBuffer> StoredFileCache::Take(const std::string& orthancId,
                                               uint64_t expectedSize)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const uint32_t position = index_.Find(orthancId);
  if (position == OrthancIdIndex::NOT_FOUND)
  {
    return nullptr;
  }

  index_.Remove(orthancId);
  const File& record = files_[position];
  if (record.size != expectedSize)
  {
    return nullptr;
  }
  return std::make_unique<StringBuffer>(
      std::string(bytes_.get() + record.start % capacity_, record.size));
}


void StoredFileCache::Forget(const std::string& orthancId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  index_.Remove(orthancId);
}


size_t StoredFileCache::GetSize() const
{
  std::lock_guard<std::mutex> lock(mutex_);
  return index_.GetSize();
}
}  // namespace AzureDicom
