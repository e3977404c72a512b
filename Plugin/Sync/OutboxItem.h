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


// An instance that Orthanc stored, as the change follower or a back-fill queues it.
struct NewInstance
{
  std::string orthancId;
  std::string sopInstanceUid;
  std::string seriesInstanceUid;
  std::string studyInstanceUid;
  std::string orthancStudyId;
  uint64_t size = 0;  // bytes of the DICOM file
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
  int64_t queuedAt = 0;
  int64_t updatedAt = 0;
  int64_t nextAttemptAt = 0;
  int64_t leaseUntil = 0;
  int64_t sentAt = 0;  // when the service confirmed it (Mirrored or AlreadyPresent)
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
};
}  // namespace AzureDicom
