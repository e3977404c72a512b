#pragma once

#include "Sync/OutboxItem.h"

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

namespace AzureDicom
{
// Returns Orthanc's ID of a resource: the SHA-1 of its identifiers joined by '|' (Patient ID,
// then the Study, Series and SOP Instance UIDs down to the resource's level), in lower-case
// hexadecimal as five groups of eight digits joined by '-'. Orthanc computes its patient,
// study, series and instance IDs this way (a unit test checks IDs that Orthanc 1.10.1 returned),
// and a database must keep its IDs across Orthanc versions.
std::string ComputeOrthancId(const std::string& joinedIdentifiers);


// What the change follower needs of the instances that Orthanc has just stored, read from their
// files in Orthanc's store callback, so that it queues them without a GET /instances/{id} each.
// That request takes Orthanc's index lock, which the stores wait for. The cache is only a
// shortcut: the follower still reads every stored instance from Orthanc's change log, and looks
// up in Orthanc those that are not here. An entry is kept only if the identifiers read from the
// file give Orthanc's instance ID again, so it holds exactly the UIDs in Orthanc's index.
// Thread-safe.
class StoredInstanceCache
{
public:
  // Reads the file of the instance that Orthanc stored as orthancId and keeps its identifiers.
  // Returns false, keeping nothing, when the file does not give that ID (a deflated data set,
  // or a Patient ID that Orthanc converted from another character set), or when the follower
  // holds the cache's lock at that moment. It runs inside Orthanc's
  // store, so it does no I/O: it reads the file's first elements and computes SHA-1 digests.
  bool Note(const std::string& orthancId, const char* file, size_t size);

  // Fills instance and removes it from the cache, or returns false when it is not there. The
  // attachment's fileUuid is not known, so it stays "".
  bool Take(NewInstance& instance, const std::string& orthancId);

  // Removes the instance, which Orthanc deleted.
  void Forget(const std::string& orthancId);

  size_t GetSize() const;

  // The oldest entries go first beyond this: those that the follower read from Orthanc instead,
  // because it polled between Orthanc's commit and its store callback, or that another node
  // follows. About 300 bytes each.
  static constexpr size_t MAX_ENTRIES = 10000;

private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, NewInstance> instances_;
  std::deque<std::string> order_;  // oldest first; may name entries already taken
};
}  // namespace AzureDicom
