#pragma once

#include "Sync/Dispatcher.h"
#include "Sync/OutboxItem.h"

#include <string>

namespace AzureDicom
{
enum class DeletionStatus
{
  Deleted,    // 200, 202 or 204
  NotFound,   // 404: already gone, which is what was wanted
  Transient,  // no response, 401 after a new token, 403, 429 or 5xx: try again later
  Rejected    // another status: trying again would give the same
};


struct DeletionResult
{
  DeletionStatus status = DeletionStatus::Transient;
  long httpStatus = 0;
  std::string message;  // names the URL, the status and the service's message
};


// The DICOMweb URL of the item's instance at the destination where the service confirmed it.
// Items confirmed by a plugin version that recorded only the STOW-RS URL use that URL's base.
std::string GetServiceInstanceUrl(const OutboxItem& item);

// Sends DICOMweb DELETE for the item's instance, with one new token after a 401.
DeletionResult DeleteAtService(IStowSender& sender, const OutboxItem& item);
}  // namespace AzureDicom
