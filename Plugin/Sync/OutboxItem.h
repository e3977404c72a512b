#pragma once

#include <cstdint>
#include <string>

namespace AzureDicom
{
// The life of an outbox item: Pending -> Sending -> Mirrored | AlreadyPresent | Failed. Skipped
// is an instance that will not be sent (deleted from Orthanc before it was), RolledBack one that a
// rollback deleted from the service. A Sending item whose lease expired is Pending again.
enum class ItemState
{
  Pending,
  Sending,
  Mirrored,
  AlreadyPresent,
  Failed,
  Skipped,
  RolledBack
};

const unsigned int ITEM_STATE_COUNT = 7;

const char* ToString(ItemState state);

// Parses the exact name of a state ("Failed"); returns false for anything else.
bool ParseItemState(ItemState& state, const std::string& name);


// The destination of an item: the service, its API version and data partition.
struct Destination
{
  std::string serviceUrl;  // no trailing slash
  std::string apiVersion;  // "v1", "v2", or "" for a plain DICOMweb server
  std::string partition;   // "" for none

  bool IsEmpty() const
  {
    return serviceUrl.empty();
  }

  bool operator==(const Destination& other) const
  {
    return serviceUrl == other.serviceUrl && apiVersion == other.apiVersion &&
           partition == other.partition;
  }

  bool operator!=(const Destination& other) const
  {
    return !(*this == other);
  }

  // The base of the DICOMweb routes: {ServiceUrl}[/{ApiVersion}][/partitions/{Partition}]
  std::string GetDicomWebBase() const;

  // The URL of one instance, for DICOMweb DELETE.
  std::string GetInstanceUrl(const std::string& studyInstanceUid,
                             const std::string& seriesInstanceUid,
                             const std::string& sopInstanceUid) const;
};


// An instance that Orthanc stored, as the change follower or a back-fill queues it.
struct NewInstance
{
  std::string orthancId;
  std::string sopInstanceUid;
  std::string seriesInstanceUid;
  std::string studyInstanceUid;
  std::string orthancStudyId;
  uint64_t size = 0;  // bytes of the DICOM file
  std::string fileUuid;  // of Orthanc's attachment, "" when not known
  std::string fileMd5;   // hex MD5 that Orthanc stored for the file that fileUuid names, or ""

  // Hex MD5 of the file, set by the change follower only for an instance that the outbox has
  // already confirmed at the service, so that a copy with other content is sent again.
  std::string contentMd5;
};


// One row of the outbox. Times are milliseconds since the Unix epoch, 0 when not set.
struct OutboxItem
{
  int64_t id = 0;  // increases with every item queued: the paging key of the REST API
  NewInstance instance;
  ItemState state = ItemState::Pending;
  unsigned int attempts = 0;  // attempts that counted against the item (not destination-wide errors)
  int statusCode = 0;         // HTTP status of the last response that concerned the item
  unsigned int failureReason = 0;  // FailureReason (0008,1197) of the last response, 0 if none
  unsigned int warningReason = 0;  // WarningReason (0008,1196) of the last response, 0 if none
  std::string message;        // the service's or the plugin's message about the item
  std::string destination;    // the STOW-RS URL the item was last sent to
  Destination sentTo;         // where the service confirmed it (Mirrored or AlreadyPresent)

  // Position of this plugin's creation of the copy at sentTo in the order of all creations, or
  // 0 when the plugin did not create it (AlreadyPresent) or a delete removed it since.
  int64_t createdSequence = 0;
  std::string contentMd5;        // of the file last sent, "" before the first send
  bool contentChanged = false;   // Orthanc stored other content after the last confirmation
  bool contentConflict = false;  // the service kept other content (OnConflict is Keep)
  int64_t rollbackId = 0;        // the rollback that is to delete the item at the service
  bool deleteRequested = false;  // deleted in Orthanc, to delete at the service (MirrorDeletes)
  int64_t queuedAt = 0;
  int64_t updatedAt = 0;
  int64_t nextAttemptAt = 0;
  int64_t leaseUntil = 0;
  int64_t sentAt = 0;  // when the service confirmed it (Mirrored or AlreadyPresent)
  std::string claimedBy;  // the node that claimed the item, in Sending, "" in any other state
};


// The outcome for one item of a response of the service, as the dispatcher records it.
struct ItemOutcome
{
  int64_t id = 0;
  ItemState state = ItemState::Pending;  // Pending: retried at nextAttemptAt
  bool countAttempt = true;  // false for destination-wide errors, which never burn attempts
  int64_t nextAttemptAt = 0;
  int statusCode = 0;
  unsigned int failureReason = 0;
  unsigned int warningReason = 0;
  std::string message;
  std::string destination;
  Destination sentTo;       // where the item was sent; recorded when the outcome confirms it
  std::string contentMd5;   // of the file that was sent
  bool contentConflict = false;
};
}  // namespace AzureDicom
