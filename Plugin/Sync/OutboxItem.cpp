#include "OutboxItem.h"

#include <array>

namespace AzureDicom
{
namespace
{
// Indexed by ItemState. These names are stored in the outbox database and appear in the REST
// API, so renaming one needs a schema migration.
const std::array<const char*, ITEM_STATE_COUNT> ITEM_STATE_NAMES = {
    "Pending", "Sending", "Mirrored", "AlreadyPresent", "Failed", "Skipped", "RolledBack"};
}  // namespace


const char* ToString(ItemState state)
{
  const size_t index = static_cast<size_t>(state);
  if (index < ITEM_STATE_NAMES.size())
  {
    return ITEM_STATE_NAMES[index];
  }

  return "Unknown";
}


bool ParseItemState(ItemState& state, const std::string& name)
{
  for (size_t index = 0; index < ITEM_STATE_NAMES.size(); index++)
  {
    if (name == ITEM_STATE_NAMES[index])
    {
      state = static_cast<ItemState>(index);
      return true;
    }
  }

  return false;
}


std::string Destination::GetDicomWebBase() const
{
  std::string base = serviceUrl;
  if (!apiVersion.empty())
  {
    base += "/" + apiVersion;
  }
  if (!partition.empty())
  {
    base += "/partitions/" + partition;
  }
  return base;
}


std::string Destination::GetInstanceUrl(const std::string& studyInstanceUid,
                                        const std::string& seriesInstanceUid,
                                        const std::string& sopInstanceUid) const
{
  return GetDicomWebBase() + "/studies/" + studyInstanceUid + "/series/" + seriesInstanceUid +
         "/instances/" + sopInstanceUid;
}
}  // namespace AzureDicom
