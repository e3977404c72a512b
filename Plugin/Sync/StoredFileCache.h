#pragma once

#include "Common/Buffer.h"
#include "Sync/OrthancIdIndex.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace AzureDicom
{
// Copies of the small files that Orthanc has just stored, made in Orthanc's store callback, so
// that a worker sends such a file without reading it from Orthanc. Then no REST call of the
// worker takes Orthanc's index lock, which a burst of stores waits for. The copies live in a
// ring of bytes reserved once, the newest replacing the oldest, so the callback allocates
// nothing. A worker that does not find a file here reads it from Orthanc. Thread-safe.
class StoredFileCache
{
public:
  // Files larger than this are not kept. Smaller files are hashed by the worker anyway
  // (MD5_FROM_ORTHANC_MIN_BYTES).
  static constexpr size_t MAX_FILE_BYTES = 64 * 1024;
  static constexpr size_t DEFAULT_CAPACITY_BYTES = 16 * 1024 * 1024;
  static constexpr size_t MAX_FILES = 16384;

  explicit StoredFileCache(size_t capacityBytes = DEFAULT_CAPACITY_BYTES);

  // Keeps a copy of the file that Orthanc stored as orthancId. Returns false, keeping nothing,
  // when the file is empty or larger than MAX_FILE_BYTES, or when a worker has the cache's lock
  // at that moment: Orthanc's store does not wait for a worker.
  bool Keep(const std::string& orthancId, const char* file, size_t size);

  // Returns the copy of the file and removes it from the cache, or null when it is not there.
  // A copy of another size than expectedSize is removed too, and null returned, so that the
  // caller reads the file from Orthanc.
  std::unique_ptr<IBuffer> Take(const std::string& orthancId, uint64_t expectedSize);

  // Removes the file of an instance that Orthanc deleted.
  void Forget(const std::string& orthancId);

  // Returns the number of files in the cache.
  size_t GetSize() const;

private:
  struct File
  {
    char orthancId[OrthancIdIndex::ID_LENGTH];
    uint64_t start;  // in bytes written since construction, so start % capacity_ in bytes_
    uint32_t size;
  };

  // Drops the oldest files until the ring has room for size bytes from start, and at most
  // MAX_FILES - 1 files remain.
  void MakeRoom(uint64_t start, size_t size);

  const size_t capacity_;
  mutable std::mutex mutex_;
  std::unique_ptr<char[]> bytes_;  // uninitialized: a file's bytes are written before read
  std::unique_ptr<File[]> files_;  // a ring of MAX_FILES records, in the order of writing
  OrthancIdIndex index_;           // the records of the files in the cache
  uint64_t end_ = 0;               // where the next file's bytes go, before wrapping
  size_t written_ = 0;             // records written so far
  size_t dropped_ = 0;             // records dropped so far, the oldest first
};
}  // namespace AzureDicom
