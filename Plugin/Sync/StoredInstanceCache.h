#pragma once

#include "Sync/OrthancIdIndex.h"
#include "Sync/OutboxItem.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace AzureDicom
{
// Returns Orthanc's ID of a resource: the SHA-1 of its identifiers joined by '|' (Patient ID,
// then the Study, Series and SOP Instance UIDs down to the resource's level), in lower-case
// hexadecimal as five groups of eight digits joined by '-'. Orthanc computes its patient,
// study, series and instance IDs this way (a unit test checks IDs that Orthanc 1.10.1 returned),
// and a database must keep its IDs across Orthanc versions.
std::string ComputeOrthancId(const std::string& joinedIdentifiers);

// Fills the instance's Orthanc ID, UIDs and Orthanc study ID from the first elements of its
// DICOM file, which may hold only the start of the file. Returns false when they do not give
// orthancId again: elements missing from those bytes, a deflated data set, or a Patient ID that
// Orthanc converted from another character set. So what it fills is what Orthanc's index has.
bool IdentifyInstanceFile(NewInstance& instance, const std::string& orthancId, const char* file,
                          size_t size);


// What the change follower needs of the instances that Orthanc has just stored, read from their
// files in Orthanc's store callback, so that it queues them without a GET /instances/{id} each.
// That request takes Orthanc's index lock, which the stores wait for. The cache is only a
// shortcut: the follower still reads every stored instance from Orthanc's change log, and looks
// up in Orthanc those that are not here. An entry is kept only if the identifiers read from the
// file give Orthanc's instance ID again, so it holds exactly the UIDs in Orthanc's index.
//
// The entries have a fixed size and live in one block, reserved once, with an index of their
// own (OrthancIdIndex). Keeping them does no allocation in Orthanc's threads: small blocks that those threads
// allocated and the follower freed later, thousands a second during a burst, slowed Orthanc's
// own allocations. Thread-safe.
class StoredInstanceCache
{
public:
  StoredInstanceCache();

  // Reads the file of the instance that Orthanc stored as orthancId and keeps its identifiers.
  // Returns false, keeping nothing, when the file does not give that ID (a deflated data set,
  // or a Patient ID that Orthanc converted from another character set), when a UID is longer
  // than DICOM allows, or when the follower has the cache's lock at that moment. It runs
  // inside Orthanc's store, so it does no I/O: it reads the file's first elements and computes
  // SHA-1 digests.
  bool Note(const std::string& orthancId, const char* file, size_t size);

  // Fills instance and removes it from the cache, or returns false when it is not there. The
  // attachment's fileUuid is not known, so it stays "".
  bool Take(NewInstance& instance, const std::string& orthancId);

  // Removes the instance, which Orthanc deleted.
  void Forget(const std::string& orthancId);

  size_t GetSize() const;

  // The oldest entries go first beyond this: those that the follower read from Orthanc instead,
  // because it polled between Orthanc's commit and its store callback, or that another node
  // follows. About 300 bytes each (9.4 MB in all), resident once the cache has kept that many.
  // Three quarters of it are enough for a burst of 2,400 stores a second for 10 s, or 1,300 for
  // 18 s, so that the follower need not poll Orthanc in such a burst. In a longer one, it polls
  // once a second while the workers still hold (MAX_BURST_HOLD_MS).
  static constexpr size_t MAX_ENTRIES = 32768;

  // During a burst, the follower leaves the stores in the cache until it contains this many.
  // The last quarter takes what Orthanc stores until the next poll.
  static constexpr size_t BURST_POLL_ENTRIES = MAX_ENTRIES / 4 * 3;

private:
  static constexpr size_t MAX_UID_LENGTH = 64;

  struct Entry
  {
    char orthancId[OrthancIdIndex::ID_LENGTH];
    char orthancStudyId[OrthancIdIndex::ID_LENGTH];
    char sopInstanceUid[MAX_UID_LENGTH];
    char seriesInstanceUid[MAX_UID_LENGTH];
    char studyInstanceUid[MAX_UID_LENGTH];
    uint8_t sopInstanceUidLength;
    uint8_t seriesInstanceUidLength;
    uint8_t studyInstanceUidLength;
    uint64_t size;
  };

  mutable std::mutex mutex_;
  // A ring of MAX_ENTRIES entries, of which those that index_ names are in the cache. It is
  // left uninitialized, so that its pages need not be resident before entries are written.
  std::unique_ptr<Entry[]> entries_;
  OrthancIdIndex index_;
  size_t written_ = 0;  // entries written so far, so the next goes to written_ % MAX_ENTRIES
  std::atomic<size_t> size_{0};  // the entries that index_ names, read without the lock
};
}  // namespace AzureDicom
