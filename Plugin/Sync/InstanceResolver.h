#pragma once

#include "Sync/OrthancGateway.h"
#include "Sync/OutboxItem.h"

#include <list>
#include <string>
#include <unordered_map>

namespace AzureDicom
{
// Reads what the outbox records of an instance (UIDs, parent study, file size) from Orthanc.
// Keeps the last series it saw, because instances come series by series and a series lookup
// costs two more REST calls. Not thread-safe: each user owns one.
//
// With a storage directory, it reads an instance's identifiers from the first elements of its
// file there, after asking Orthanc only for the attachment's UUID and size. Orthanc then reads
// two rows of its index (the instance and its attachment) and returns a small JSON object,
// instead of expanding the instance with its tags, metadata and parent series, and the
// resolver needs no request per series. Only what the page cache has of a file is read, so an
// archive on disk is not read twice (now and when it is sent) and nothing waits for the disk.
// A file that does not give the instance's Orthanc ID again is not used. After
// FILE_MISSES_TO_STOP such instances in a row (files not in memory, compressed by Orthanc, or
// kept elsewhere by a storage plugin), only Orthanc's index is read.
class InstanceResolver
{
public:
  explicit InstanceResolver(IOrthancGateway& orthanc) : orthanc_(orthanc)
  {
  }

  // Sets Orthanc's StorageDirectory, as an absolute path, before the first Resolve().
  void SetStorageDirectory(const std::string& directory)
  {
    storageDirectory_ = directory;
  }

  // Whether Resolve(instance, orthancId) reads the files in the storage directory, so that the
  // caller need not have Orthanc expand the instances for it.
  bool ReadsFiles() const
  {
    return !storageDirectory_.empty() && fileMisses_ < FILE_MISSES_TO_STOP;
  }

  // Returns false when the instance no longer exists in Orthanc.
  bool Resolve(NewInstance& instance, const std::string& orthancId);

  // The same from the instance's JSON that Orthanc returned (GET /instances/{id}, or one
  // element of GET /instances?expand), without a REST call of its own but for a new series.
  bool Resolve(NewInstance& instance, const std::string& orthancId, const Json::Value& answer);

private:
  struct SeriesInfo
  {
    std::string seriesInstanceUid;
    std::string studyInstanceUid;
    std::string orthancStudyId;
  };

  bool ResolveSeries(SeriesInfo& info, const std::string& orthancSeriesId);

  // Identifies the instance from its file. Returns false when the file does not identify it, and
  // sets instanceExists to false when Orthanc no longer has the instance.
  bool ResolveFromFile(NewInstance& instance, const std::string& orthancId, bool& instanceExists);

  static constexpr size_t MAX_CACHED_SERIES = 64;
  static constexpr unsigned int FILE_MISSES_TO_STOP = 20;

  // The identifiers are within the first kilobytes of a file. A large element before them (a
  // private one, or a sequence) needs a second, longer read.
  static constexpr size_t FIRST_READ_BYTES = 16 * 1024;
  static constexpr size_t SECOND_READ_BYTES = 1024 * 1024;

  IOrthancGateway& orthanc_;
  std::string storageDirectory_;
  unsigned int fileMisses_ = 0;
  std::unordered_map<std::string, SeriesInfo> series_;
  std::list<std::string> seriesOrder_;  // oldest first, to evict
};


// Returns the string member of a JSON object, or "" when it is missing or not a string.
std::string GetStringMember(const Json::Value& object, const std::string& name);
}  // namespace AzureDicom
