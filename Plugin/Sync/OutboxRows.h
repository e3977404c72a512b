#pragma once

#include "Sync/OutboxItem.h"
#include "Sync/Sqlite.h"

#include <string>

namespace AzureDicom
{
// The columns of the items table that ReadItem() expects, in its order.
extern const std::string ITEM_COLUMNS;

// Reads a row selected with ITEM_COLUMNS.
OutboxItem ReadItem(const Query& query);
}  // namespace AzureDicom
